"""Launchers and run-folder locks: the Ray launcher on real (loopback) Ray clusters, the local
pool's failure handling, and the lock that keeps two drivers from running one job twice.

Ray clusters here are ``ray.cluster_utils.Cluster`` on 127.0.0.1 only (the variable below must
be set before Ray is imported), each with its own temp dir, 75 MB object stores, and every
process it started ended when its test ends, even on failure.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # bind 127.0.0.1, not all interfaces
                  RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")

from experiments.core.launch import JobsFailed, launch  # noqa: E402
from experiments.core.records import read_jsonl  # noqa: E402
from experiments.core.runs import (LOCK, Job, RunLocked, claim_dir, lock_holder,  # noqa: E402
                                   run_lock)
from experiments.train.job import run_job, summary  # noqa: E402
from experiments.cli import load_experiment, run_experiment  # noqa: E402
from run import cli  # noqa: E402
from tests.helpers import TINY, strip_timing  # noqa: E402

# One pytest-xdist worker runs this file's tests, one after another: Ray clusters and locks
# of two workers never meet.
pytestmark = pytest.mark.xdist_group("ray")

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "mnist_table1.yaml"
OBJECT_STORE = 75 * 2**20
NODE = re.compile(r"\(node ([0-9a-f]{8})\)")


# ---------------------------------------------------------------- loopback Ray clusters

@contextmanager
def loopback_cluster(nodes, cpus=1):
    """A Ray cluster of ``nodes`` nodes of ``cpus`` CPUs on 127.0.0.1, in its own temp dir.

    On exit every process started with that temp dir in its environment is ended by pid
    (never ``ray stop``, which would end every Ray process on the machine), and the dir removed.
    """
    from ray.cluster_utils import Cluster
    root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = root  # Ray's files, and its address file, stay in there
    cluster = None
    try:
        node_args = dict(num_cpus=cpus, object_store_memory=OBJECT_STORE)
        cluster = Cluster(initialize_head=True,
                          head_node_args=dict(include_dashboard=False, **node_args))
        for _ in range(nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if cluster is not None:
            cluster.shutdown()
        end_processes_of(root)
        shutil.rmtree(root, ignore_errors=True)
        os.environ.pop("RAY_TMPDIR") if saved is None else os.environ.update(RAY_TMPDIR=saved)


def end_processes_of(root):
    """SIGKILL every process (but this one) whose environment names ``root`` as RAY_TMPDIR."""
    mark = f"RAY_TMPDIR={root}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            mine = mark in (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mine and int(proc.name) != os.getpid():
            with suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture
def two_nodes():
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    with loopback_cluster(2) as cluster:
        yield cluster


def node_ids(cluster):
    return {node.node_id[:8] for node in [cluster.head_node, *cluster.worker_nodes]}


@pytest.fixture
def one_thread():
    """The local launcher's --threads 1 sets this process's torch threads; put them back."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny(mnist_root, networks, *extra):
    """The --set overrides of a tiny-data smoke suite of ``networks`` (seed 42)."""
    return [*TINY, f"data.root={mnist_root}", f"run=[{', '.join(networks)}]", *extra]


def tiny_suite(overrides):
    return load_experiment(CONFIG, overrides, smoke=True)


def cli_args(out, overrides):
    return [str(CONFIG), "--smoke", "--out", str(out),
            *[arg for override in overrides for arg in ("--set", override)]]


def run_dirs(out):
    """{network: run folder} of every finished run under ``out`` (one seed per network)."""
    return {done.parent.parent.name: done.parent for done in sorted(Path(out).rglob("done"))}


def metrics(out):
    return {name: strip_timing(read_jsonl(folder / "metrics.jsonl"))
            for name, folder in run_dirs(out).items()}


def sessions(folder):
    return json.loads((Path(folder) / "provenance.json").read_text())["sessions"]


# ---------------------------------------------------------------- the Ray launcher

@pytest.mark.slow
def test_two_node_cluster_runs_the_suite_on_both_nodes_with_the_local_metrics(
        two_nodes, mnist_root, tmp_path, capsys, one_thread):
    networks = ["dense_cnn1", "dense_cnn2", "sparse_cnn1", "sparse_cnn2"]
    overrides = tiny(mnist_root, networks)
    args = [*cli_args(tmp_path / "ray", overrides), "--launcher", "ray", "--address",
            two_nodes.address]
    assert cli(args) == 0
    assert set(NODE.findall(capsys.readouterr().out)) == node_ids(two_nodes)  # both nodes
    run_experiment(tiny_suite(overrides), tmp_path / "local", threads=1)  # local, no report
    ray_metrics = metrics(tmp_path / "ray")
    assert sorted(ray_metrics) == sorted(networks)
    assert ray_metrics == metrics(tmp_path / "local")


@pytest.mark.slow
def test_a_node_lost_mid_job_reruns_it_elsewhere_resuming_to_the_same_metrics(
        two_nodes, mnist_root, tmp_path, one_thread):
    exp = tiny_suite(tiny(mnist_root, ["sparse_cnn1", "dense_cnn2"], "train.epochs=3"))
    worker = next(iter(two_nodes.worker_nodes))
    killed = []
    killer = threading.Thread(target=kill_mid_job, args=(two_nodes, worker, tmp_path / "ray",
                                                         killed), daemon=True)
    killer.start()
    run_experiment(exp, tmp_path / "ray", launcher="ray", address=two_nodes.address)
    killer.join()
    assert killed, "no job of the worker node was seen mid-job"
    lost = sessions(killed[0])
    assert len(lost) == 2 and lost[0]["finished"] is None  # cut, then resumed to the end
    assert lost[1]["epochs"][0] >= 1 and lost[1]["epochs"][1] == 3
    run_experiment(exp, tmp_path / "local", threads=1)
    assert metrics(tmp_path / "ray") == metrics(tmp_path / "local")


def kill_mid_job(cluster, worker, out, killed, timeout=180):  # generous: a loaded machine
    """Lose ``worker`` once a job it runs has saved its first epoch's checkpoint: SIGKILL its
    Ray processes and the job's worker process (which would otherwise go on without its node)."""
    raylet = worker.all_processes["raylet"][0].process.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        for lock in out.rglob(LOCK):
            pid = lock_holder(lock).get("pid")
            if pid and parent_of(pid) == raylet and (lock.parent / "checkpoint.pt").is_file():
                cluster.remove_node(worker, allow_graceful=False)
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(lock.parent)
                break
        time.sleep(0.02)


def parent_of(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


DRIVER = """
import sys
from experiments.cli import load_experiment, run_experiment
address, out, *overrides = sys.argv[1:]
run_experiment(load_experiment("configs/mnist_table1.yaml", overrides, smoke=True), out,
               launcher="ray", address=address)
"""  # a driver process: run.py's path without the report, which both would write


@pytest.mark.slow
def test_two_drivers_on_one_suite_run_every_job_exactly_once(two_nodes, mnist_root, tmp_path):
    """The first job to start is paused (SIGSTOP) until the other driver has met its lock."""
    networks = ["dense_cnn1", "sparse_cnn1"]
    driver = [sys.executable, "-c", DRIVER, two_nodes.address, str(tmp_path),
              *tiny(mnist_root, networks)]
    drivers = [subprocess.Popen(driver, cwd=REPO, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [lines_of(driver) for driver in drivers]
    holder = wait_for(lambda: next((lock_holder(lock).get("pid")
                                    for lock in tmp_path.rglob(LOCK)), None))
    os.kill(holder, signal.SIGSTOP)
    try:
        met = wait_for(lambda: any("running elsewhere" in line for out in outputs for line in out))
    finally:
        os.kill(holder, signal.SIGCONT)
    codes = [driver.wait(timeout=120) for driver in drivers]
    assert met and codes == [0, 0], "".join(outputs[0] + outputs[1])[-3000:]
    dirs = run_dirs(tmp_path)
    assert sorted(dirs) == sorted(networks)
    for folder in dirs.values():
        assert len(sessions(folder)) == 1, folder  # trained once, by one of the drivers
        assert not (folder / LOCK).exists()
    for output in outputs:  # each driver waited for, and reported, every job
        assert all(any(f"{name} seed 42: best test" in line for line in output)
                   for name in networks)


def lines_of(process):
    """The lines ``process`` prints, gathered by a thread as they come."""
    lines = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")),
                     daemon=True).start()
    return lines


def wait_for(condition, timeout=60):
    """The first true value of ``condition()`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return None


@pytest.mark.slow
def test_a_failing_job_is_reported_once_and_not_retried_while_the_others_finish(
        two_nodes, mnist_root, tmp_path, capsys):
    exp = tiny_suite([*TINY, "run=[dense_cnn1, dense_cnn2]", "data.download=false",
                      f"defaults.data.root={mnist_root}",  # beneath each network's own
                      "networks.dense_cnn2.data.root=/nonexistent"])
    with pytest.raises(JobsFailed, match=r"1 of 2 jobs failed \(dense_cnn2 seed 42"):
        run_experiment(exp, tmp_path, launcher="ray", address=two_nodes.address)
    assert sorted(run_dirs(tmp_path)) == ["dense_cnn1"]
    failed = tmp_path / "smoke" / "mnist_table1" / "dense_cnn2" / "seed-42"
    assert len(sessions(failed)) == 1  # one attempt: an exception of the job is not retried
    lines = [line for line in capsys.readouterr().out.splitlines() if "dense_cnn2" in line]
    assert len(lines) == 1 and "failed: DataError" in lines[0]


@pytest.mark.slow
def test_a_task_that_cannot_see_its_run_folder_says_so(two_nodes, tmp_path, capsys):
    unseen = tmp_path / "not-shared" / "seed-1"  # never claimed: not on this filesystem
    job = Job("dense_cnn1", 1, unseen, load_experiment(CONFIG).jobs["dense_cnn1"])
    with pytest.raises(JobsFailed):
        launch([job], run_job, summary, "ray", address=two_nodes.address)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("dense_cnn1 seed 1: failed: NotShared: ")
    assert str(unseen) in line and socket.gethostname() in line and "every node" in line


def test_without_ray_the_command_stops_with_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    monkeypatch.delitem(sys.modules, "experiments.core.ray_launcher", raising=False)
    assert cli([str(CONFIG), "--smoke", "--launcher", "ray", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --launcher ray: Ray is not installed; "
                   "pip install -r requirements-ray.txt"]
    assert not any(tmp_path.iterdir())  # stopped before any work


@pytest.mark.parametrize("flags, message", [
    (["--address", "127.0.0.1:6379"], "--address: only with --launcher ray"),
    (["--launcher", "slurm"], "--launcher: must be one of local, ray"),
    (["--jobs", "0"], "--jobs: must be >= 1"),
])
def test_launcher_flags_are_checked_before_any_work(flags, message, tmp_path, capsys):
    assert cli([str(CONFIG), "--smoke", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- the local launcher

def fails_on_bad(config, name, seed, folder, progress):
    """A job function that raises for the network called 'bad' (its own failure)."""
    if name == "bad":
        raise ValueError("bad input: sample 3 has no label")
    return [{"epoch": 0, "seed": seed}]


def claimed_jobs(root, names):
    jobs = [Job(name, 1, root / name, None) for name in names]
    for job in jobs:
        claim_dir(job.folder, {"network": job.name})
    return jobs


def test_local_launcher_reports_a_failing_job_and_finishes_the_others(tmp_path, capsys):
    jobs = claimed_jobs(tmp_path, ["first", "bad", "last"])
    with pytest.raises(JobsFailed, match=r"1 of 3 jobs failed \(bad seed 1;"):
        launch(jobs, fails_on_bad, lambda name, seed, records: f"{name} seed {seed}: ok")
    lines = capsys.readouterr().out.splitlines()
    assert "first seed 1: ok" in lines and "last seed 1: ok" in lines
    assert "bad seed 1: failed: ValueError: bad input: sample 3 has no label" in lines


def test_local_launcher_stops_a_job_whose_run_folder_is_not_there(tmp_path, capsys):
    job = Job("unseen", 1, tmp_path / "elsewhere", None)
    with pytest.raises(JobsFailed):
        launch([job], fails_on_bad, summary)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "failed: NotShared: " in line and "a filesystem that every node shares" in line


# ---------------------------------------------------------------- the run-folder lock

def test_lock_is_held_for_the_block_and_names_its_holder(tmp_path):
    with run_lock(tmp_path):
        holder = lock_holder(tmp_path / LOCK)
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        with pytest.raises(RunLocked, match=f"running elsewhere .*pid {os.getpid()}"):
            with run_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK).exists()
    with run_lock(tmp_path):  # free again
        pass


def test_lock_heartbeat_touches_the_file_while_held(tmp_path):
    with run_lock(tmp_path, beat=0.05):
        lock = tmp_path / LOCK
        os.utime(lock, (0, 0))
        assert wait_for(lambda: time.time() - lock.stat().st_mtime < 5, timeout=5)


HOLDER = """
import sys, time
from experiments.core.runs import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_lock_of_a_killed_holder_is_taken_over_at_once(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # its pid is gone on this host: stale, taken over
        assert lock_holder(tmp_path / LOCK)["pid"] == os.getpid()


def write_foreign_lock(folder, age):
    lock = folder / LOCK
    lock.write_text(json.dumps({"host": "another-node", "pid": 12345, "since": "then"}))
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_lock_of_another_host_is_stale_only_when_its_heartbeat_is_old(tmp_path):
    write_foreign_lock(tmp_path, age=5)
    with pytest.raises(RunLocked, match="host another-node"):
        with run_lock(tmp_path, stale_after=60):
            pass
    write_foreign_lock(tmp_path, age=120)
    with run_lock(tmp_path, stale_after=60):  # its node is gone: taken over
        assert lock_holder(tmp_path / LOCK)["host"] == socket.gethostname()


def test_lock_waits_for_a_live_holder_up_to_the_given_time(tmp_path):
    release = threading.Timer(0.3, lambda: (tmp_path / LOCK).unlink())
    write_foreign_lock(tmp_path, age=0)
    release.start()
    start = time.monotonic()
    with run_lock(tmp_path, wait=5):
        assert 0.2 < time.monotonic() - start < 4


def test_a_lock_taken_over_as_stale_is_not_removed_by_its_old_holder(tmp_path):
    lock = tmp_path / LOCK
    with run_lock(tmp_path):
        lock.unlink()  # as a takeover does, then the new holder's lock:
        write_foreign_lock(tmp_path, age=0)
    assert lock_holder(lock)["host"] == "another-node"
