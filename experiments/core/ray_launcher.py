"""The Ray launcher: every pending job of a suite as a Ray task, on a cluster or on this machine.

    python run.py CONFIG --launcher ray [--address HOST:PORT] [--cpus-per-job N]
                         [--gpus-per-job F] [--storage auto|shared|objects|PATH|URI]

The cluster is ``--address``, else the one Ray's own convention names (``RAY_ADDRESS``, or a
cluster started by ``ray start`` on this machine), else a new Ray instance on this machine's
cores. Before any run folder is claimed the launcher connects, checks the cluster
(experiments/core/ray_preflight.py: reachable, same Ray and Python, a node that can run a job,
the same library versions on every node), prepares the suite's datasets here and on every node,
and prints the cluster it joined. Then it keeps as many jobs on the cluster as fit at once.

The code travels with the jobs (Ray's ``working_dir``: this repository without results/,
datasets/ and the shipped weights unless a job loads them), so no node needs the repository.
The driver's run folders are the source of truth: the driver takes each job's lock (and beats
its heartbeat) while the job runs on a node (experiments/core/ray_job.py), where it runs

- in the run folder itself when every node sees the driver's output folder at the same path
  (a shared filesystem: ``--storage shared``, found by ``auto``), in the driver's working
  directory, as the local launcher would;
- else in node-local scratch, started from the driver's copy of the folder (its last
  checkpoint and records), its files sent back after each record and at the end: through
  Ray's object store (``--storage objects``, what ``auto`` picks) or a folder every node and
  the driver reach (``--storage PATH`` or an fsspec URI: experiments/core/run_files.py).

Each job gets ``cpus_per_job`` CPUs (its torch threads), ``gpus_per_job`` GPUs (0.25 packs four
jobs on a GPU; each GPU job runs in a fresh worker process, so no CUDA memory outlives it; a
job of 0 GPUs sees none: CUDA_VISIBLE_DEVICES is empty) and the memory ``job_memory`` estimates.
A job whose node or worker process is lost is rerun at once, resuming from what came back; one
that meets a ``transient`` error is rerun after a pause (BACKOFF_SECONDS, doubling), up to
MAX_ATTEMPTS tries; any other exception of the job is its own and is not retried: its folder
gets error.txt and the suite finishes the others.
"""

import errno
import functools
import os
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from data import prepare_dataset
from data.download import DownloadError
from experiments.core.config import ConfigError
from experiments.core.drive import Failed, drive, error_report
from experiments.core.records import REPO, origin, read_jsonl
from experiments.core.run_files import absolute, snapshot, transport, write_files
from experiments.core.runs import is_done, run_lock

try:
    import ray
except ImportError:
    raise ConfigError("--launcher ray: Ray is not installed; "
                      "pip install -r requirements-ray.txt") from None

from experiments.core import ray_preflight as preflight  # noqa: E402 (needs Ray)
from experiments.core.ray_job import Plan, digest, node_versions, run_on_node  # noqa: E402

MAX_ATTEMPTS = 4  # tries of a job that its node lost or that met a transient error
BACKOFF_SECONDS = 5  # before the 2nd try after a transient error; doubled before each next
TRANSIENT_ERRNOS = {errno.ESTALE, errno.EIO, errno.ETIMEDOUT, errno.ECONNRESET,
                    errno.EHOSTUNREACH}  # what a network filesystem's hiccups raise
EXCLUDES = ["/results/", "/datasets", "/notebooks/", "/.venv/"]  # never shipped to nodes

_ON_CPU = ray.remote(run_on_node)
_ON_GPU = ray.remote(max_calls=1)(run_on_node)  # a fresh process per GPU job


def transient(error):
    """Whether a job's ``error`` may pass if the job is tried again: CUDA running out of memory
    (GPUs shared by several jobs), an OSError of a network filesystem (TRANSIENT_ERRNOS), a
    download that failed (data.download.DownloadError)."""
    return (isinstance(error, (torch.cuda.OutOfMemoryError, DownloadError))
            or isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS)


class Retry(Exception):
    """A try of a job that may pass another time: ``error``, its error.txt ``report``, and
    how long to wait first."""

    def __init__(self, error, report, why, delay):
        super().__init__(why)
        self.error, self.report, self.why, self.delay = error, report, why, delay


class Cluster:
    """A checked cluster and how this driver runs jobs on it."""

    def __init__(self, cpus, gpus, storage, limit):
        self.cpus, self.gpus, self.limit = cpus, gpus, limit
        self.shared = storage == "shared"
        self.transport = transport(storage)
        self.cwd, self.origin, self.versions = os.getcwd(), origin(), node_versions()
        self.closed = threading.Event()  # the driver is disconnecting: submit nothing more

    def options(self, job):
        cpu_only = {} if self.gpus else {"runtime_env": {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}}
        return {"num_cpus": self.cpus, "num_gpus": self.gpus, "max_retries": 0,
                "memory": preflight.job_memory(job.config), **cpu_only}

    def plan(self, job, attempt):
        """How a try of ``job`` runs; in scratch it starts from the driver's folder."""
        key = scratch_key(job.folder)
        seed = None if self.shared else self.transport.send(key, snapshot(job.folder))
        return Plan(self.shared, self.cwd, self.origin, self.versions, key, self.transport,
                    seed, attempt)


def scratch_key(folder):
    """'<experiment>-<digest of its folder>/<network>/seed-<s>': a job's name on nodes."""
    experiment = Path(folder).resolve().parent.parent
    return f"{experiment.name}-{digest(experiment)}/{Path(folder).parent.name}/{Path(folder).name}"


@contextmanager
def session(jobs, address=None, cpus_per_job=1, gpus_per_job=0, storage="auto"):
    """Connect and check the cluster for ``jobs`` (their folders not claimed yet); yield
    ``run(jobs, job_fn, summary)``. Nothing to run: no cluster."""
    if not jobs:
        yield lambda *args: None
        return
    configs = [job.config for job in jobs]
    preflight.connect(address, runtime_env(configs))
    cluster = None
    try:
        cluster = checked(jobs, configs, cpus_per_job, gpus_per_job, storage)
        yield functools.partial(run_jobs, cluster)
    finally:
        if cluster is not None:  # (interrupted: the threads following jobs must not retry,
            cluster.closed.set()  # which would start a new local Ray instance)
        ray.shutdown()


def runtime_env(configs):
    """This repository as every task's working directory; the shipped weights only when a
    job loads them (``source: pretrained``)."""
    pretrained = any(getattr(config, "source", None) == "pretrained" for config in configs)
    excludes = EXCLUDES + ([] if pretrained else ["/models/pretrained/*.pt"])
    return {"working_dir": str(REPO), "excludes": excludes}


def checked(jobs, configs, cpus, gpus, storage):
    """The Cluster, once every check passed (ConfigError for the first that does not)."""
    nodes = preflight.alive_nodes()
    largest = max(configs, key=preflight.job_memory)
    request = preflight.job_request(largest, cpus, gpus)
    preflight.check_feasible(request, nodes)
    for data in preflight.data_of(configs):
        prepare_dataset(data)
    storage = absolute(storage)
    found = preflight.survey(jobs[0].folder.parent.parent, configs, os.getcwd(),
                             node_versions(), storage)
    check_inputs(found)
    storage = files_go(storage, found, jobs[0].folder.parent.parent)
    cluster = Cluster(cpus, gpus, storage, preflight.capacity(request, nodes))
    print(f"ray: {preflight.describe(nodes)} (hosts {', '.join(sorted(set(found.hosts)))}); "
          f"run folders {WHERE.get(storage, f'in node-local scratch, files through {storage}')}; "
          f"{cluster.limit} jobs at a time, each {preflight.describe_request(request)}",
          flush=True)
    return cluster


WHERE = {"shared": "on the shared filesystem",
         "objects": "in node-local scratch, files through Ray's object store"}


def check_inputs(found):
    """ConfigError when a node does not see what a ``source: runs`` job reads."""
    if found.unseen:
        path, hosts = next(iter(found.unseen.items()))
        raise ConfigError(f"source: runs reads {path}, which node {hosts[0]} does not see: put "
                          f"it on a filesystem every node shares, or run with --launcher local")


def files_go(storage, found, out):
    """Where run files go: ``storage`` as given, or for 'auto' shared when every node sees the
    driver's output folder, else through the object store."""
    if storage == "auto":
        return "objects" if found.unshared else "shared"
    if storage == "shared" and found.unshared:
        raise ConfigError(f"--storage shared: node {found.unshared[0]} does not see {out} "
                          f"(no shared filesystem there); use --storage auto")
    if found.unreached:
        raise ConfigError(f"--storage {storage}: node {found.unreached[0]} does not reach it; "
                          f"give a folder or URI that every node and the driver reach, or "
                          f"--storage objects")
    return storage


def run_jobs(cluster, jobs, job_fn, summary):
    """Run ``jobs``, ``cluster.limit`` at a time, each in a driver thread that follows it."""
    drive(jobs, lambda job: in_thread(run_job, cluster, job_fn, job),
          lambda name, seed, result: f"{summary(name, seed, result[0])} ({result[1]})",
          limit=cluster.limit, claim=claim)


def in_thread(fn, *args):
    """The Future of ``fn(*args)``, run in a daemon thread: an interrupted driver exits
    without waiting for the jobs it follows (Ray ends them with it)."""
    future = Future()

    def body():
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # noqa: B036 (the Future carries it to drive)
            future.set_exception(error)

    threading.Thread(target=body, daemon=True).start()
    return future


def claim(job):
    """Take ``job``'s lock here (RunLocked if another process holds it); return its release."""
    stack = ExitStack()
    stack.enter_context(run_lock(job.folder))
    return stack.close


def run_job(cluster, job_fn, job):
    """(records, where it ran) of ``job``, tried up to MAX_ATTEMPTS times."""
    if is_done(job.folder):  # finished by another driver while this one waited for its lock
        return read_jsonl(job.folder / "metrics.jsonl"), "finished elsewhere"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return follow(cluster, job_fn, job, attempt)
        except Retry as retry:
            if attempt == MAX_ATTEMPTS or cluster.closed.is_set():
                raise Failed(retry.error, retry.report) from None
            tqdm.write(f"{job.name} seed {job.seed}: {retry.why}; trying again "
                       f"{f'in {retry.delay} s' if retry.delay else 'now'} (try "
                       f"{attempt + 1} of {MAX_ATTEMPTS})", file=sys.stdout)
            time.sleep(retry.delay)


def follow(cluster, job_fn, job, attempt):
    """Try ``attempt`` of ``job``: submit it, and take in what it streams back."""
    task = _ON_GPU if cluster.gpus else _ON_CPU
    attempt = f"{attempt} of {MAX_ATTEMPTS}"
    stream = task.options(**cluster.options(job)).remote(job_fn, job, cluster.plan(job, attempt))
    where, report, records = "node ?", None, None
    try:
        for ref in stream:
            message = ray.get(ref)
            if "host" in message:
                where = f"node {message['node']}, {message['host']}"
            if "files" in message:
                write_files(job.folder, cluster.transport.receive(scratch_key(job.folder),
                                                                  message["files"]))
            for line in message.get("lines", ()):
                tqdm.write(line, file=sys.stdout)
            report = message.get("report", report)
            records = message.get("records", records)
        return records, where
    except ray.exceptions.RayTaskError as e:  # the job's own exception
        error = getattr(e, "cause", None) or e
        report = report or error_report(job, str(e), where, attempt)
        if transient(error):
            delay = BACKOFF_SECONDS * 2 ** (int(attempt.split()[0]) - 1)  # 5, 10, 20 s
            raise Retry(error, report, f"{type(error).__name__} (transient)", delay) from None
        raise Failed(error, report) from None
    except ray.exceptions.RayError as e:  # its node or worker process was lost
        raise Retry(e, error_report(job, str(e), where, attempt),
                    f"lost with its {where.split(',')[0]}", 0) from None
