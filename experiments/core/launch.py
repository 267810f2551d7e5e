"""Launchers: every way of running a suite's pending jobs, behind one interface.

    launch(jobs, job_fn, summary, launcher="local", workers=1, threads=None)

``job_fn(config, name, seed, folder, progress)`` is a module-level function (so that worker
processes can import it) that runs one job to completion and returns its records; it is a
function of those arguments alone, so nothing about a job depends on the launcher.
``summary(name, seed, records)`` is the line printed when a job finishes.

local: the jobs one after another in this process (``workers`` = 1, with progress bars), or
in ``workers`` spawned processes, each with ``threads`` torch threads (default: the cores
divided by the workers; oversubscribed threads are very costly: a 2-thread job sharing 2 cores
with two others ran 30x slower than with 1 thread).
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

import torch
from tqdm.auto import tqdm

from experiments.core.config import ConfigError
from experiments.core.speed import keep_freed_memory


def default_threads(workers):
    return max(1, (os.cpu_count() or 1) // workers)


def run_local(jobs, job_fn, summary, workers=1, threads=None):
    """Run ``jobs`` here (workers == 1) or in a pool of ``workers`` processes."""
    if workers <= 1:
        if threads:  # else torch's default: one per physical core
            torch.set_num_threads(threads)
        for job in jobs:
            print(f"{job.name} seed {job.seed} -> {job.folder}")
            job_fn(job.config, job.name, job.seed, job.folder, True)
        return
    threads = threads or default_threads(workers)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_pool_worker, job_fn, job, threads): job for job in jobs}
        for future in tqdm(as_completed(futures), total=len(futures), desc="jobs", unit="job"):
            job = futures[future]
            tqdm.write(summary(job.name, job.seed, future.result()), file=sys.stdout)


def _pool_worker(job_fn, job, threads):
    keep_freed_memory()
    torch.set_num_threads(threads)
    return job_fn(job.config, job.name, job.seed, job.folder, False)


LAUNCHERS = {"local": run_local}


def launch(jobs, job_fn, summary, launcher="local", **options):
    """Run every job in ``jobs`` with the named launcher."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher: must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    LAUNCHERS[launcher](jobs, job_fn, summary, **options)
