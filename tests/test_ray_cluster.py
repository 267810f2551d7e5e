"""A real two-node Ray cluster whose nodes have separate disks (tests/two_disks.py): the smoke
Table 1 suite finishes with the local launcher's metrics, a driver killed and run again skips
the jobs it finished, and a job whose node is killed resumes on the other node from the
checkpoint it had sent back. Loopback only, inside namespaces that end every process they
started; ``ray stop`` is never run.

The CI-sized suite is four networks on tiny data; RAY_CLUSTER_TEST=full runs the whole smoke
suite (eight networks, 256 training images) instead.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from tests.ray_helpers import REPO, metrics, run_dirs, sessions, tiny, tiny_suite  # noqa: I100
from experiments.cli import run_experiment

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

NETWORKS = ["dense_cnn1", "dense_cnn2", "sparse_cnn1", "sparse_cnn2"]
FULL = os.environ.get("RAY_CLUSTER_TEST") == "full"
NAMESPACES = ["unshare", "-n", "-p", "-f", "--mount-proc"]


def namespaces_work():
    """Whether this process may make the namespaces the cluster needs (root, or a container
    allowed to: Docker's default seccomp profile refuses unshare)."""
    try:
        subprocess.run([*NAMESPACES, "unshare", "-m", "-u", "true"], check=True,
                       capture_output=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def scenarios(mnist_root):
    suite = [f"data.root={mnist_root}"] if FULL else tiny(mnist_root, NETWORKS)
    return {"suite": suite,
            "restart": tiny(mnist_root, ["dense_cnn1", "sparse_cnn1", "dense_cnn2"],
                            "train.epochs=2"),
            "resume": tiny(mnist_root, ["sparse_cnn1", "dense_cnn2"], "train.epochs=4",
                           "data.train_limit=256")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, mnist_root):
    """Run tests/two_disks.py once: (its output folder, its report, the scenarios)."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    if not all(map(shutil.which, ("unshare", "ip", "mount"))) or not namespaces_work():
        pytest.skip("needs `unshare -n -p -f --mount-proc` and `unshare -m -u` (root, in a "
                    "container allowed to make namespaces) and `ip`")
    out = tmp_path_factory.mktemp("two-disks")
    head = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's socket paths must fit
    spec = {"out": str(out), "port": 6390, "head": head, **scenarios(mnist_root)}
    (out / "spec.json").write_text(json.dumps(spec))
    try:
        subprocess.run([*NAMESPACES, sys.executable, "-m", "tests.two_disks",
                        str(out / "spec.json")], cwd=REPO, check=True, timeout=1800)
    finally:
        shutil.rmtree(head, ignore_errors=True)
    return out, json.loads((out / "report.json").read_text()), spec


def log(out, name):
    return (out / f"{name}.log").read_text()


def test_the_smoke_suite_on_separate_disks_has_the_local_metrics(cluster, tmp_path, one_thread):
    out, report, spec = cluster
    assert report["suite"]["code"] == 0, log(out, "suite")[-3000:]
    text = log(out, "suite")
    assert "ray: 2 nodes" in text and "node-local scratch" in text
    assert "ray-worker" in text and socket.gethostname() in text  # both nodes ran jobs
    run_experiment(tiny_suite(spec["suite"]), tmp_path, threads=1)
    ray_metrics = metrics(out / "suite")
    assert len(ray_metrics) == (8 if FULL else 4)
    assert ray_metrics == metrics(tmp_path)
    for folder in run_dirs(out / "suite").values():
        assert {"checkpoint.pt", "best.pt", "provenance.json", "done"} <= {
            p.name for p in folder.iterdir()}
        assert "run.py" in sessions(folder)[0]["command"]  # the driver's, not Ray's worker's


def test_a_driver_killed_and_run_again_skips_the_jobs_it_finished(cluster):
    out, report, spec = cluster
    restart = report["restart"]
    assert restart["killed_after"] and restart["code"] == 0, log(out, "restart")[-3000:]
    assert len(run_dirs(out / "restart")) == 3
    assert len(sessions(restart["killed_after"])) == 1  # finished before the kill: not rerun
    skipped = re.search(r"3 jobs, (\d) already done", log(out, "restart"))
    assert skipped and int(skipped[1]) >= 1


def test_a_job_whose_node_is_killed_resumes_on_the_other_from_its_checkpoint(
        cluster, tmp_path, one_thread):
    out, report, spec = cluster
    resume = report["resume"]
    assert resume["killed_during"] and resume["code"] == 0, log(out, "resume")[-3000:]
    cut, resumed = sessions(resume["killed_during"])[-2:]
    assert cut["hostname"] == "ray-worker" and cut["finished"] is None
    assert resumed["hostname"] == socket.gethostname()  # the head node
    assert resumed["epochs"][0] >= 1 and resumed["epochs"][1] == 4  # from the checkpoint
    run_experiment(tiny_suite(spec["resume"]), tmp_path, threads=1)
    assert metrics(out / "resume") == metrics(tmp_path)
