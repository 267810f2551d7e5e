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

Every launcher runs its jobs through ``drive``: one bar over jobs and a line per finished job.
A run folder's lock (experiments/core/runs.py) is held while its job runs, so two drivers on
one suite never run a job twice at once: the local launchers' jobs take it themselves
(experiments/core/lifecycle.py), the Ray launcher's driver takes it for its remote jobs
(``claim``). A job locked by another process waits in the driver and is tried again later: it
then returns the records that process wrote, or runs here if that process died. A job that
raises is reported in one line and its folder gets ``error.txt`` (traceback, host, attempt);
the others go on, and JobsFailed names the failed ones and their folders at the end.

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
import socket
import sys
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

import torch
from tqdm.auto import tqdm

from experiments.core.config import ConfigError
from experiments.core.records import atomic_write, now
from experiments.core.runs import ERROR, RunLocked, check_visible
from experiments.core.speed import keep_freed_memory

RETRY_LOCKED_SECONDS = 5  # a job whose lock the driver could not take is tried again this often


class JobsFailed(Exception):
    """Some jobs of a suite raised an error; the others finished."""


class Failed(Exception):
    """A job's own exception (``error``) as a launcher saw it, with the text of its error.txt
    (``report``: traceback, host, attempt) when the launcher knows more than this process."""

    def __init__(self, error, report):
        super().__init__(str(error))
        self.error, self.report = error, report


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


def run_one(job_fn, job, progress):
    """Run ``job`` (it takes its run folder's lock: RunLocked while another process holds it)."""
    check_visible(job.folder)
    return job_fn(job.config, job.name, job.seed, job.folder, progress)


def drive(jobs, submit, summary, limit=None, claim=None):
    """Run ``jobs`` through ``submit(job) -> Future``, at most ``limit`` at a time.

    ``claim(job)``, when given, takes the job's lock before it is submitted and returns the
    function that releases it (RunLocked: the job waits here and is tried again later).
    """
    queue, running, waiting, failed, told = deque(jobs), {}, [], [], set()
    with tqdm(total=len(queue), desc="jobs", unit="job") as bar:
        try:
            while queue or running or waiting:
                queue.extend(_due(waiting))
                while queue and (limit is None or len(running) < limit):
                    job = queue.popleft()
                    try:
                        release = claim(job) if claim else _nothing
                    except RunLocked as error:
                        _wait_for(job, error, waiting, told, RETRY_LOCKED_SECONDS)
                        continue
                    running[submit(job)] = job, release
                for future in _wait_some(running, waiting):
                    job, release = running.pop(future)
                    release()
                    error = future.exception()
                    if isinstance(error, RunLocked):  # the job met the lock itself, waiting
                        _wait_for(job, error, waiting, told, 0)
                        continue
                    bar.update()
                    if error is not None:
                        failed.append(job)
                    tqdm.write(finish(job, future, error, summary), file=sys.stdout)
        finally:  # interrupted: give back the locks this driver holds
            for _, release in running.values():
                release()
    if failed:
        raise JobsFailed(failed_jobs(failed, len(jobs)))


def _nothing():
    pass


def _wait_for(job, error, waiting, told, seconds):
    """Put ``job``, locked by another process, aside for ``seconds`` (saying so once)."""
    if job.folder not in told:
        tqdm.write(f"{job.name} seed {job.seed}: {error}; waiting for it", file=sys.stdout)
        told.add(job.folder)
    waiting.append((time.monotonic() + seconds, job))


def _due(waiting):
    """The jobs of ``waiting`` whose time has come (removed from it)."""
    clock = time.monotonic()
    due = [job for at, job in waiting if at <= clock]
    waiting[:] = [(at, job) for at, job in waiting if at > clock]
    return due


def _wait_some(running, waiting):
    """The futures of ``running`` that finish before the next waiting job is due."""
    timeout = (max(0.0, min(at for at, _ in waiting) - time.monotonic()) if waiting else None)
    if not running:
        time.sleep(timeout or 0)
        return set()
    return wait(running, timeout=timeout, return_when=FIRST_COMPLETED)[0]


def finish(job, future, error, summary):
    """The line printed when ``job`` ends; a failed job's folder gets error.txt, a finished
    one loses the error.txt of an earlier try."""
    if error is None:
        (job.folder / ERROR).unlink(missing_ok=True)
        return summary(job.name, job.seed, future.result())
    report = error.report if isinstance(error, Failed) else error_report(job, error)
    error = error.error if isinstance(error, Failed) else error
    if job.folder.is_dir():
        atomic_write(job.folder / ERROR, report)
    text = str(error).strip().splitlines()
    return f"{job.name} seed {job.seed}: failed: {type(error).__name__}" + (
        f": {text[0]}" if text else "")


def error_report(job, error, host=None, attempt="1 of 1"):
    """error.txt: which job, where and when it failed, and the traceback."""
    lines = traceback.format_exception(error) if isinstance(error, BaseException) else [error]
    return (f"job: {job.name} seed {job.seed}\nhost: {host or socket.gethostname()}\n"
            f"attempt: {attempt}\nfailed: {now()}\n\n" + "".join(lines))


def failed_jobs(failed, total):
    """JobsFailed's text: how many failed, and each one's error.txt."""
    where = "".join(f"\n  {job.name} seed {job.seed}: {job.folder / ERROR}" for job in failed)
    return (f"{len(failed)} of {total} jobs failed; the others finished. Rerun the command "
            f"to retry the failed ones. Tracebacks:{where}")


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
