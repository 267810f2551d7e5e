"""What the Ray tests (and benchmarks/bench_launchers.py) share: loopback clusters, tiny smoke
suites and reading their run folders back. Importing this module sets Ray's environment, so
import it before anything imports Ray.

Clusters here are ``ray.cluster_utils.Cluster`` on 127.0.0.1 only (the variable below must be
set before Ray is imported), each with its own temp dir and small object stores, and every
process one started is ended when it closes, even on failure (never ``ray stop``, which would
end every Ray process on the machine).
"""

import errno
import json
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # bind 127.0.0.1, not all interfaces
                  RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")

from experiments.cli import load_experiment  # noqa: E402
from experiments.core.lifecycle import open_run  # noqa: E402
from experiments.core.records import read_jsonl  # noqa: E402
from experiments.core.runs import Job, claim_dir  # noqa: E402
from tests.helpers import TINY, strip_timing  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "mnist_table1.yaml"
OBJECT_STORE = 75 * 2**20


@contextmanager
def loopback_cluster(nodes, cpus=1, head_cpus=None, **resources):
    """A Ray cluster of ``nodes`` nodes of ``cpus`` CPUs (the head ``head_cpus``, default the
    same) and ``resources`` (e.g. num_gpus=1: GPUs Ray schedules, none really there) on
    127.0.0.1, in its own temp dir. On exit every process started with that temp dir in its
    environment is ended by pid, and the dir removed."""
    from ray.cluster_utils import Cluster
    root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "TMPDIR")}
    os.environ["RAY_TMPDIR"] = root  # Ray's files, and its address file, stay in there
    os.environ["TMPDIR"] = root  # and the jobs' node-local scratch
    cluster = None
    try:
        node = dict(object_store_memory=OBJECT_STORE, **resources)
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            include_dashboard=False, num_cpus=cpus if head_cpus is None else head_cpus, **node))
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=cpus, **node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if cluster is not None:
            cluster.shutdown()
        end_processes_of(root)
        shutil.rmtree(root, ignore_errors=True)
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.update({name: value})


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


# ---------------------------------------------------------------- toy jobs (no data: milliseconds)

@dataclass
class Toy:
    """A job config of no data."""
    steps: int = 1


def toy_jobs(root, names):
    """Claimed Jobs of ``Toy`` configs named ``names`` under ``root``."""
    jobs = [Job(name, 1, Path(root) / name, Toy()) for name in names]
    for job in jobs:
        claim_dir(job.folder, {"network": job.name, "steps": 1})
    return jobs


def what_it_saw(config, name, seed, folder, progress):
    """A toy job (importable on Ray's workers) that records its CUDA_VISIBLE_DEVICES, GPUs and
    process id. The job 'flaky' raises a network filesystem's OSError on its first try, 'bad'
    an error of its own after writing a file."""
    import ray
    with open_run(folder, config, name, seed, {"name": "toy"}) as run:
        if run.finished:
            return run.records
        run.start("cpu", 0, 1)
        tried = Path(folder, "tried.txt")
        if name == "flaky" and not tried.exists():
            tried.write_text("once")
            raise OSError(errno.ESTALE, "Stale file handle")
        if name == "bad":
            tried.write_text("partial output")
            raise ValueError("bad input: sample 3 has no label")
        run.add({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": ray.get_gpu_ids(),
                 "pid": os.getpid()})
    return run.records


def toy_summary(name, seed, records):
    return f"{name} seed {seed}: ok"
