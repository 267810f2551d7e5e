"""Launchers: every way of running a suite's pending jobs, behind one interface.

    launch(jobs, job_fn, summary, launcher="local", **options)

``job_fn(config, name, seed, folder, progress)`` is a module-level function (so that worker
processes can import it) that runs one job to completion and returns its records; it is a
function of those arguments alone, so nothing about a job depends on the launcher.
``summary(name, seed, records)`` is the line printed when a job finishes.

Every launcher runs a job through ``run_one`` and reports through ``drive``: one bar over jobs
and a line per finished job. The job holds its run folder's lock while it runs
(experiments/core/lifecycle.py), so two drivers on one suite never run a job twice at once; a
job locked by another process is tried again later: it then returns the records that process
wrote, or runs here if that process died. A job that raises is
reported in one line, the others go on, and JobsFailed names the failed ones at the end.

local (options ``workers``, ``threads``): the jobs one after another in this process
(``workers`` = 1, with progress bars), or in ``workers`` spawned processes, each with
``threads`` torch threads (default: the cores divided by the workers; oversubscribed threads
are very costly: a 2-thread job sharing 2 cores with two others ran 30x slower than with 1).
ray (options ``address``, ``cpus_per_job``, ``gpus_per_job``): experiments/core/ray_launcher.py,
imported only when asked for, as Ray is an optional dependency.

``LAUNCHER_OPTIONS`` is the one place the launchers' command-line flags are spelt: run.py
builds its arguments from it and experiments/cli.py checks them against it.
"""

import importlib.util
import os
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

import torch
from tqdm.auto import tqdm

from experiments.core.config import ConfigError
from experiments.core.runs import RunLocked, check_visible
from experiments.core.speed import keep_freed_memory


class JobsFailed(Exception):
    """Some jobs of a suite raised an error; the others finished."""


def launch(jobs, job_fn, summary, launcher="local", **options):
    """Run every job in ``jobs`` with the named launcher."""
    launcher_named(launcher)(jobs, job_fn, summary, **options)


def launcher_named(name):
    """The launcher function called ``name``; ConfigError if it is unknown or not installed."""
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


def drive(jobs, submit, summary, limit=None, cause=lambda error: error):
    """Run ``jobs`` through ``submit(job) -> Future``, at most ``limit`` at a time.

    ``cause(error)`` is the job's own exception inside a launcher's wrapper of it.
    """
    queue, running, failed, elsewhere = deque(jobs), {}, [], set()
    with tqdm(total=len(queue), desc="jobs", unit="job") as bar:
        while queue or running:
            while queue and (limit is None or len(running) < limit):
                job = queue.popleft()
                running[submit(job)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                error = cause(future.exception()) if future.exception() else None
                if isinstance(error, RunLocked):
                    if job.folder not in elsewhere:
                        tqdm.write(f"{job.name} seed {job.seed}: {error}; waiting for it",
                                   file=sys.stdout)
                    elsewhere.add(job.folder)
                    queue.append(job)
                    continue
                bar.update()
                if error:
                    failed.append(f"{job.name} seed {job.seed}")
                tqdm.write(ending(job, future, error, summary), file=sys.stdout)
    if failed:
        raise JobsFailed(f"{len(failed)} of {len(jobs)} jobs failed ({', '.join(failed)}; "
                         f"errors above); the others finished. Rerun to retry the failed ones")


def ending(job, future, error, summary):
    """The line printed when ``job`` ends: its summary, or its error's type and first line."""
    if error is None:
        return summary(job.name, job.seed, future.result())
    text = str(error).strip().splitlines()
    return f"{job.name} seed {job.seed}: failed: {type(error).__name__}" + (
        f": {text[0]}" if text else "")


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


def run_ray(jobs, job_fn, summary, **options):
    """The Ray launcher (experiments/core/ray_launcher.py), imported when used: Ray is optional."""
    from experiments.core import ray_launcher
    ray_launcher.run_ray(jobs, job_fn, summary, **options)


LAUNCHERS = {"local": run_local, "ray": run_ray}


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
)
