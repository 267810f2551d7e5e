"""Driving a suite's jobs, for every launcher: one progress bar over the jobs, a line per
finished job, locked jobs waiting in the driver, failures reported in the job's folder.

``drive(jobs, submit, summary, limit, claim)`` submits each job (``submit(job) -> Future``),
at most ``limit`` at a time. A run folder's lock (experiments/core/runs.py) is held while its
job runs: the local launchers' jobs take it themselves (experiments/core/lifecycle.py), the
Ray launcher's driver takes it for its remote jobs (``claim``). A job locked by another process
waits here and is tried again later. A job that raises is reported in one line and its folder
gets ``error.txt`` (traceback, host, attempt); the others go on, and JobsFailed names the
failed ones and their folders at the end.
"""

import socket
import sys
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait

from tqdm.auto import tqdm

from experiments.core.records import atomic_write, now
from experiments.core.runs import ERROR, RunLocked, check_visible

RETRY_LOCKED_SECONDS = 5  # a job whose lock the driver could not take is tried again this often


class JobsFailed(Exception):
    """Some jobs of a suite raised an error; the others finished."""


class Failed(Exception):
    """A job's own exception (``error``) as a launcher saw it, with the text of its error.txt
    (``report``: traceback, host, attempt) when the launcher knows more than this process."""

    def __init__(self, error, report):
        super().__init__(str(error))
        self.error, self.report = error, report


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


