"""Launchers and run-folder locks: the Ray launcher on real (loopback) Ray clusters, its checks
before any folder is claimed, the local pool's failure handling, and the lock that keeps two
drivers from running one job twice. (A cluster whose nodes have separate disks:
tests/test_ray_cluster.py.)

Ray clusters here are tests/ray_helpers.py's ``loopback_cluster``: 127.0.0.1 only, their own
temp dir, small object stores, and every process they started ended when the test ends.
"""

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest
import torch

from tests.ray_helpers import (CONFIG, REPO, Toy, cli_args, loopback_cluster,  # noqa: I100
                               metrics, run_dirs, sessions, tiny, tiny_suite, toy_jobs,
                               toy_summary, what_it_saw)
from data import DataConfig, DataError
from data.download import DownloadError
from experiments.cli import load_experiment, run_experiment
from experiments.core.config import ConfigError
from experiments.core.launch import JobsFailed, launch
from experiments.core.records import read_jsonl
from experiments.core.runs import (ERROR, LOCK, Job, RunLocked, claim_dir, lock_holder,
                                   pid_space, run_lock)
from experiments.train.job import summary
from run import cli
from tests.helpers import TINY

# One pytest-xdist worker runs this file's tests, one after another: Ray clusters and locks
# of two workers never meet.
pytestmark = pytest.mark.xdist_group("ray")

NODE = re.compile(r"\(node ([0-9a-f]{8}), ")


@pytest.fixture
def two_nodes():
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    with loopback_cluster(2) as cluster:
        yield cluster


def node_ids(cluster):
    return {node.node_id[:8] for node in [cluster.head_node, *cluster.worker_nodes]}


def ray_parts():
    """The Ray launcher's modules (skipped without Ray)."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    from experiments.core import ray_job, ray_launcher, ray_preflight
    return ray_launcher, ray_preflight, ray_job


# ---------------------------------------------------------------- the Ray launcher on clusters

@pytest.mark.slow
@pytest.mark.parametrize("storage", ["auto", "path"])
def test_two_node_cluster_runs_the_suite_on_both_nodes_with_the_local_metrics(
        two_nodes, mnist_root, tmp_path, capsys, one_thread, storage):
    """auto: both nodes see the output folder (one machine), so jobs write in place; a path:
    jobs run in node-local scratch and their files come back through that folder."""
    networks = ["dense_cnn1", "dense_cnn2", "sparse_cnn1", "sparse_cnn2"]
    overrides = tiny(mnist_root, networks)
    where = "auto" if storage == "auto" else str(tmp_path / "storage")
    args = [*cli_args(tmp_path / "ray", overrides), "--launcher", "ray", "--address",
            two_nodes.address, "--storage", where]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert set(NODE.findall(out)) == node_ids(two_nodes)  # both nodes
    assert ("on the shared filesystem" if storage == "auto" else f"files through {where}") in out
    run_experiment(tiny_suite(overrides), tmp_path / "local", threads=1)  # local, no report
    ray_metrics = metrics(tmp_path / "ray")
    assert sorted(ray_metrics) == sorted(networks)
    assert ray_metrics == metrics(tmp_path / "local")
    if storage == "path":
        assert not any(p.is_file() for p in (tmp_path / "storage").rglob("*"))


DRIVER = """
import sys
from experiments.cli import load_experiment, run_experiment
address, storage, out, *overrides = sys.argv[1:]
run_experiment(load_experiment("configs/mnist_table1.yaml", overrides, smoke=True), out,
               launcher="ray", address=address, storage=storage)
"""  # a driver process: run.py's path without the report (which two drivers would both write)


@pytest.mark.slow
def test_a_node_lost_mid_job_reruns_it_on_another_from_the_checkpoint_sent_back(
        mnist_root, tmp_path, one_thread):
    """In node-local scratch (--storage objects): the head has no CPU, so the job runs on the
    worker; once its first checkpoint is back on the driver the worker is lost and a new node
    joins, where the job resumes from that checkpoint to the metrics of an unbroken run."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    overrides = tiny(mnist_root, ["sparse_cnn1"], "train.epochs=4")
    folder = tmp_path / "ray" / "smoke" / "mnist_table1" / "sparse_cnn1" / "seed-42"
    with loopback_cluster(2, head_cpus=0) as cluster:
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, cluster.address, "objects", str(tmp_path / "ray"),
             *overrides], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = lines_of(driver)
        lost = lose_worker_once(cluster, folder, driver)  # here: Ray adds nodes in main threads
        assert driver.wait(timeout=300) == 0 and lost, "".join(output)[-3000:]
    assert any("lost with its node" in line for line in output)
    cut, resumed = sessions(folder)
    assert cut["finished"] is None and resumed["epochs"][0] >= 1 and resumed["epochs"][1] == 4
    run_experiment(tiny_suite(overrides), tmp_path / "local", threads=1)
    assert metrics(tmp_path / "ray") == metrics(tmp_path / "local")


def lose_worker_once(cluster, folder, driver, timeout=300):  # generous: a loaded machine
    """When ``folder`` (on the driver) holds a sent-back checkpoint, SIGKILL the worker node's
    Ray processes and its job's process (which would go on without its node), then add a
    node; whether that happened."""
    (worker,) = cluster.worker_nodes
    raylet = worker.all_processes["raylet"][0].process.pid
    deadline = time.monotonic() + timeout
    while not (folder / "checkpoint.pt").is_file():
        if driver.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    jobs = [pid for pid in children_of(raylet) if b"run_on_node" in cmdline(pid)]
    cluster.remove_node(worker, allow_graceful=False)
    for pid in jobs:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.add_node(num_cpus=1, object_store_memory=75 * 2**20)
    return True


def children_of(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_two_drivers_on_one_suite_run_every_job_exactly_once(two_nodes, mnist_root, tmp_path):
    """The driver holding the first lock is paused (SIGSTOP) until the other has met it."""
    networks = ["dense_cnn1", "sparse_cnn1"]
    driver = [sys.executable, "-c", DRIVER, two_nodes.address, "auto", str(tmp_path),
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
    codes = [driver.wait(timeout=180) for driver in drivers]
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
def test_failures_stop_early_or_leave_error_txt_and_transient_ones_are_tried_again(
        mnist_root, tmp_path, capsys):
    """On one node: missing data, or a --storage the node does not reach, stops the suite
    before any folder is claimed or job run; a job's own error (in node-local scratch) is
    tried once, its folder gets what it wrote and error.txt from the node, and the summary
    lists it; a network filesystem's OSError is tried again."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    no_data = tiny_suite([*TINY, "run=[dense_cnn1]", "data.download=false",
                          "data.root=/nonexistent"])
    jobs = toy_jobs(tmp_path / "toys", ["good", "bad", "flaky"])
    with loopback_cluster(1) as cluster:
        with pytest.raises(DataError, match="/nonexistent"):
            run_experiment(no_data, tmp_path / "no-data", launcher="ray",
                           address=cluster.address)
        with pytest.raises(ConfigError, match="--storage memory://t: node .* does not reach"):
            launch(jobs, what_it_saw, toy_summary, "ray", address=cluster.address,
                   storage="memory://t")  # this process's memory: no node reaches it
        with pytest.raises(JobsFailed, match=f"1 of 3 jobs failed; .*\n  bad seed 1: "
                                             f"{jobs[1].folder / ERROR}$"):
            launch(jobs, what_it_saw, toy_summary, "ray", address=cluster.address,
                   storage="objects")
    assert not (tmp_path / "no-data").exists()
    out = capsys.readouterr().out
    assert "flaky seed 1: OSError (transient); trying again in 5 s (try 2 of 4)" in out
    assert "flaky seed 1: ok" in out and "good seed 1: ok" in out
    assert [line for line in out.splitlines() if "bad seed 1" in line] == [
        "bad seed 1: failed: ValueError: bad input: sample 3 has no label"]  # one try
    bad = jobs[1].folder
    report = (bad / ERROR).read_text()
    assert report.startswith(f"job: bad seed 1\nhost: {socket.gethostname()}\nattempt: 1 of 4")
    assert "in what_it_saw" in report and "ValueError: bad input" in report
    assert (bad / "tried.txt").read_text() == "partial output"  # sent back from scratch
    assert sessions(bad)[0]["finished"] is None and not (bad / LOCK).exists()


@pytest.mark.slow
def test_gpu_jobs_get_their_share_in_fresh_processes_and_cpu_jobs_see_no_gpu(tmp_path, capsys):
    """A one-node cluster that says it has one GPU (none is there): a request no node can meet
    stops before any work, 0.5 GPU runs two jobs per GPU each in its own process, and a job of
    no GPU sees none."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
    with loopback_cluster(1, cpus=2, num_gpus=1) as cluster:
        with pytest.raises(ConfigError, match="needs 1 CPU, 2 GPU .* no node has them"):
            launch(toy_jobs(tmp_path / "big", ["a"]), what_it_saw, toy_summary, "ray",
                   address=cluster.address, gpus_per_job=2)
        gpu = toy_jobs(tmp_path / "gpu", ["g1", "g2"])
        launch(gpu, what_it_saw, toy_summary, "ray", address=cluster.address, gpus_per_job=0.5)
        assert "2 jobs at a time, each 1 CPU, 0.5 GPU" in capsys.readouterr().out
        cpu = toy_jobs(tmp_path / "cpu", ["c1"])
        launch(cpu, what_it_saw, toy_summary, "ray", address=cluster.address)
    seen = [read_record(job.folder) for job in gpu]
    assert [(r["cuda"], r["gpus"]) for r in seen] == [("0", [0])] * 2
    assert len({r["pid"] for r in seen}) == 2  # max_calls=1: no CUDA memory outlives a job
    assert [(r["cuda"], r["gpus"]) for r in map(read_record, [j.folder for j in cpu])] == [
        ("", [])]


def read_record(folder):
    (record,) = read_jsonl(folder / "metrics.jsonl")
    return record


# ---------------------------------------------------------------- checks before any work

def test_without_ray_the_command_stops_with_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    monkeypatch.delitem(sys.modules, "experiments.core.ray_launcher", raising=False)
    assert cli([str(CONFIG), "--smoke", "--launcher", "ray", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --launcher ray: Ray is not installed; "
                   "pip install -r requirements-ray.txt"]
    assert not any(tmp_path.iterdir())  # stopped before any work


def test_an_unreachable_address_stops_at_once_with_one_line_and_exit_2(tmp_path, capsys):
    ray_parts()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    start = time.monotonic()
    code = cli([str(CONFIG), "--smoke", "--launcher", "ray", "--address", address,
                "--out", str(tmp_path)])
    assert code == 2 and time.monotonic() - start < 10
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --address {address}: no Ray cluster answers there")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flags, message", [
    (["--address", "127.0.0.1:6379"], "--address: only with --launcher ray"),
    (["--storage", "s3://bucket"], "--storage: only with --launcher ray"),
    (["--launcher", "slurm"], "--launcher: must be one of local, ray"),
    (["--jobs", "0"], "--jobs: must be >= 1"),
])
def test_launcher_flags_are_checked_before_any_work(flags, message, tmp_path, capsys):
    assert cli([str(CONFIG), "--smoke", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_version_mismatch_is_one_line():
    _, preflight, ray_job = ray_parts()
    ray_says = ("Version mismatch: The cluster was started with:\n    Ray: 2.59.0\n    Python: "
                "3.11.7\nThis process on node 10.0.0.1 was started with:\n    Ray: 2.60.0\n"
                "    Python: 3.12.1\n")
    assert preflight.version_line("h:6379", ray_says) == (
        "--address h:6379: the cluster runs Ray 2.59.0 on Python 3.11.7, this driver Ray 2.60.0 "
        "on Python 3.12.1: run the driver with the cluster's versions")
    driver = ray_job.node_versions()
    assert ray_job.version_mismatch(driver, dict(driver), "n1") is None
    line = ray_job.version_mismatch(driver, {**driver, "torch": "2.13.0"}, "n1")
    assert line.startswith(f"node n1 runs torch 2.13.0 (driver: {torch.__version__}): install")


def nodes(*resources):
    return [{"Alive": True, "Resources": r} for r in resources]


def test_a_request_no_node_can_meet_is_refused_and_capacity_counts_whole_jobs():
    _, preflight, _ = ray_parts()
    cluster = nodes({"CPU": 4, "memory": 8 * 2**30}, {"CPU": 2, "GPU": 1, "memory": 2**30})
    request = {"CPU": 1, "GPU": 0.25, "memory": 2**29}
    assert preflight.capacity(request, cluster) == 2  # the GPU node's memory: two of 0.5 GiB
    assert preflight.capacity({**request, "GPU": 0}, cluster) == 6
    with pytest.raises(ConfigError, match=r"needs 1 CPU, 1 GPU and 2\.0 GiB of memory on one "
                                          r"node, and no node has them \(2 nodes, 6 CPUs, 1 GPUs"):
        preflight.check_feasible({"CPU": 1, "GPU": 1, "memory": 2**31}, cluster)


def test_a_jobs_memory_is_its_process_and_its_dataset():
    _, preflight, _ = ray_parts()
    full, smoke = (load_experiment(CONFIG, smoke=flag).jobs["sparse_cnn2"] for flag in (0, 1))
    assert preflight.job_memory(full) == preflight.PROCESS_BYTES + 784 * 4 * (
        3 * 60_000 + 12 * 10_000)
    assert preflight.job_memory(smoke) == preflight.PROCESS_BYTES + 784 * 4 * (
        3 * 256 + 12 * 200)
    assert preflight.job_memory(Toy()) == preflight.PROCESS_BYTES


def test_where_files_go_and_what_stops_the_suite_follow_from_what_the_nodes_see():
    ray_launcher, preflight, _ = ray_parts()
    everywhere, one_apart = preflight.Survey(["a", "b"]), preflight.Survey(["a", "b"], ["b"])
    assert ray_launcher.files_go("auto", everywhere, "out") == "shared"
    assert ray_launcher.files_go("auto", one_apart, "out") == "objects"
    with pytest.raises(ConfigError, match="--storage shared: node b does not see out"):
        ray_launcher.files_go("shared", one_apart, "out")
    with pytest.raises(ConfigError, match="--storage /nfs/x: node b does not reach it"):
        ray_launcher.files_go("/nfs/x", preflight.Survey(["a", "b"], ["b"], unreached=["b"]), "o")
    with pytest.raises(ConfigError, match="source: runs reads /r/mnist, which node b does not"):
        ray_launcher.check_inputs(preflight.Survey(["a", "b"], unseen={"/r/mnist": ["b"]}))


@pytest.mark.parametrize("error, retried", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), True),
    (OSError(errno.ESTALE, "Stale file handle"), True),
    (OSError(errno.EIO, "Input/output error"), True),
    (DownloadError("http://x: download failed after 5 attempts"), True),
    (OSError(errno.ENOENT, "No such file"), False),
    (ValueError("bad input"), False),
])
def test_transient_errors_are_a_named_list(error, retried):
    ray_launcher, _, _ = ray_parts()
    assert ray_launcher.transient(error) is retried


def test_a_node_reads_the_drivers_data_where_it_sees_it_else_prepares_its_own(
        tmp_path, monkeypatch, mnist_root):
    _, _, ray_job = ray_parts()
    monkeypatch.setattr(ray_job, "scratch_root", lambda: tmp_path / "scratch")
    ray_job._node_data.cache_clear()
    seen = DataConfig(root="datasets")
    assert ray_job.node_data(seen, str(mnist_root.parent)).root == str(mnist_root)
    prepared = []
    monkeypatch.setattr(ray_job, "prepare_dataset", fake_prepare(prepared))
    own = ray_job.node_data(DataConfig(root="/not/on/this/node"), "/driver")
    assert own.root.startswith(str(tmp_path / "scratch" / "datasets"))
    assert prepared == ["/not/on/this/node", own.root]
    ray_job._node_data.cache_clear()


def fake_prepare(calls):
    """prepare_dataset where only downloads succeed (no dataset is where the driver has it)."""
    def prepare(cfg):
        calls.append(cfg.root)
        if not cfg.download:
            from data import DataError
            raise DataError(f"{cfg.root}: not found")
    return prepare


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
    with pytest.raises(JobsFailed, match=f"1 of 3 jobs failed; .*\n  bad seed 1: "
                                         f"{tmp_path / 'bad' / ERROR}$"):
        launch(jobs, fails_on_bad, lambda name, seed, records: f"{name} seed {seed}: ok")
    lines = capsys.readouterr().out.splitlines()
    assert "first seed 1: ok" in lines and "last seed 1: ok" in lines
    assert "bad seed 1: failed: ValueError: bad input: sample 3 has no label" in lines
    report = (tmp_path / "bad" / ERROR).read_text()
    assert report.startswith(f"job: bad seed 1\nhost: {socket.gethostname()}\nattempt: 1 of 1")
    assert "in fails_on_bad" in report and "ValueError: bad input" in report
    assert not (tmp_path / "first" / ERROR).exists()
    launch(jobs[1:2], lambda *args: [], lambda *args: "ok")  # fixed, and run again
    assert not (tmp_path / "bad" / ERROR).exists()


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


def write_foreign_lock(folder, age, host="another-node", space="elsewhere", pid=12345):
    lock = folder / LOCK
    lock.write_text(json.dumps({"host": host, "pid": pid, "space": space, "since": "then"}))
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def gone_pid():
    """A pid that no process has now (a child that has exited and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_dead_pid_counts_only_in_its_own_boot_and_pid_namespace(tmp_path):
    """Containers (or PID namespaces) that share a hostname reuse each other's pids: a holder
    of another pid space is stale only by its heartbeat, one of this space at once."""
    here = socket.gethostname()
    write_foreign_lock(tmp_path, age=5, host=here, space="other-boot/pid:[1]", pid=gone_pid())
    with pytest.raises(RunLocked, match=f"host {here}"):
        with run_lock(tmp_path, stale_after=60):
            pass
    write_foreign_lock(tmp_path, age=5, host=here, space=pid_space(), pid=gone_pid())
    with run_lock(tmp_path, stale_after=60):  # its pid is gone in this very space: taken over
        assert lock_holder(tmp_path / LOCK)["space"] == pid_space()


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
