"""Launchers: every way of running a suite's pending jobs, behind one interface.

    with open_launcher(launcher, jobs, **options) as run:   # before any run folder is claimed
        run(jobs, job_fn, summary)
    launch(jobs, job_fn, summary, launcher="local", **options)   # the two at once

``job_fn(config, name, seed, folder, progress)`` is a module-level function (so that worker
processes can import it) that runs one job to completion and returns its records; it is a
function of those arguments alone, so nothing about a job depends on the launcher.
``summary(name, seed, records)`` is the line printed when a job finishes. ``open_launcher``
gets the jobs before their folders are claimed, so that a launcher can check what it needs
first (the Ray launcher connects to its cluster and checks it there).

Every launcher runs its jobs through ``experiments.core.drive.drive``: one bar over jobs and a
line per finished job, locked jobs waiting in the driver, ``error.txt`` for a failed job, and
JobsFailed naming the failed ones at the end.

local (options ``workers``, ``threads``): the jobs one after another in this process
(``workers`` = 1, with progress bars), or in ``workers`` spawned processes, each with
``threads`` torch threads (default: the cores divided by the workers; oversubscribed threads
are very costly: a 2-thread job sharing 2 cores with two others ran 30x slower than with 1).
ray (options ``address``, ``cpus_per_job``, ``gpus_per_job``, ``storage``):
experiments/core/ray_launcher.py, imported only when asked for, as Ray is optional.

``LAUNCHER_OPTIONS`` is the one place the launchers' command-line flags are spelt: run.py
builds its arguments from it and experiments/cli.py checks them against it.
"""

import functools
import importlib.util
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

import torch
from tqdm.auto import tqdm

from experiments.core.config import ConfigError
from experiments.core.drive import JobsFailed, drive, run_one
from experiments.core.speed import keep_freed_memory

__all__ = ["JobsFailed", "LAUNCHERS", "LAUNCHER_OPTIONS", "launch", "launcher_named",
           "open_launcher", "run_local"]

def launch(jobs, job_fn, summary, launcher="local", **options):
    """Run every job in ``jobs`` with the named launcher."""
    with open_launcher(launcher, jobs, **options) as run:
        run(jobs, job_fn, summary)


def open_launcher(name, jobs, **options):
    """The named launcher, ready to run ``jobs`` (not claimed yet): a context manager that
    yields ``run(jobs, job_fn, summary)``. ConfigError, before any work, when it cannot."""
    return launcher_named(name)(jobs, **options)


def launcher_named(name):
    """The session of the launcher called ``name``; ConfigError if unknown or not installed."""
    if name not in LAUNCHERS:
        raise ConfigError(f"--launcher: must be one of {', '.join(LAUNCHERS)}, got {name!r}")
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("--launcher ray: Ray is not installed; "
                          "pip install -r requirements-ray.txt")
    return LAUNCHERS[name]


def default_threads(workers):
    return max(1, (os.cpu_count() or 1) // workers)


def run_local(jobs, job_fn, summary, workers=1, threads=None):
    """Run ``jobs`` here (workers == 1) or in a pool of ``workers`` processes."""
    if workers <= 1:
        if threads:  # else torch's default: one per physical core
            torch.set_num_threads(threads)
        drive(jobs, lambda job: _run_here(job_fn, job), summary, limit=1)
        return
    threads = threads or default_threads(workers)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        drive(jobs, lambda job: pool.submit(_pool_worker, job_fn, job, threads), summary,
              limit=workers)


def _run_here(job_fn, job):
    """The finished Future of ``job`` run in this process, with progress bars."""
    tqdm.write(f"{job.name} seed {job.seed} -> {job.folder}", file=sys.stdout)
    future = Future()
    try:
        future.set_result(run_one(job_fn, job, True))
    except Exception as error:  # the job's own failure: drive reports it and goes on
        future.set_exception(error)
    return future


def _pool_worker(job_fn, job, threads):
    keep_freed_memory()
    torch.set_num_threads(threads)
    return run_one(job_fn, job, False)


@contextmanager
def local_session(jobs, workers=1, threads=None):
    """The local launcher needs nothing before its jobs start."""
    yield functools.partial(run_local, workers=workers, threads=threads)


def ray_session(jobs, **options):
    """The Ray launcher (experiments/core/ray_launcher.py), imported when used: Ray is optional."""
    from experiments.core import ray_launcher
    return ray_launcher.session(jobs, **options)


LAUNCHERS = {"local": local_session, "ray": ray_session}


@dataclass(frozen=True)
class LauncherOption:
    """One launcher's command-line option: ``flag`` on the command line, ``name`` in the
    launcher's keyword arguments."""
    flag: str
    name: str
    launcher: str
    type: type
    metavar: str
    help: str
    check: Callable = lambda value: None  # raises ConfigError for an impossible value

    @property
    def dest(self):
        return self.flag.lstrip("-").replace("-", "_")


def _at_least_one(flag):
    def check(value):
        if value < 1:
            raise ConfigError(f"{flag}: must be >= 1, got {value}")
    return check


def _gpu_share(value):
    if value <= 0 or value > 1 and not float(value).is_integer():
        raise ConfigError(f"--gpus-per-job: must be a share in (0, 1] or a whole number of "
                          f"GPUs, got {value}")


def _storage(value):
    if not value.strip():
        raise ConfigError("--storage: must be auto, shared, objects, a path or a URI")


LAUNCHER_OPTIONS = (
    LauncherOption("--jobs", "workers", "local", int, "N",
                   "local: parallel training processes (default 1)", _at_least_one("--jobs")),
    LauncherOption("--threads", "threads", "local", int, "N",
                   "local: torch threads per job (default: all cores / jobs); use 1 when other "
                   "programs share the cores", _at_least_one("--threads")),
    LauncherOption("--address", "address", "ray", str, "HOST:PORT",
                   "ray: the cluster (default: RAY_ADDRESS, else a cluster started by `ray "
                   "start` here, else a new Ray instance on this machine's cores)"),
    LauncherOption("--cpus-per-job", "cpus_per_job", "ray", int, "N",
                   "ray: CPUs per job, which are its torch threads (default 1)",
                   _at_least_one("--cpus-per-job")),
    LauncherOption("--gpus-per-job", "gpus_per_job", "ray", float, "F",
                   "ray: GPUs per job; 0.25 packs four jobs on a GPU (default 0)", _gpu_share),
    LauncherOption("--storage", "storage", "ray", str, "WHERE",
                   "ray: where jobs' files go: auto (the default: in place when every node "
                   "sees the output folder, else node-local scratch sent back through Ray's "
                   "object store), shared, objects, or a PATH or fsspec URI every node and "
                   "the driver reach (NFS, s3://...)", _storage),
)
