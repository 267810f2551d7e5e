"""One run lifecycle, written once: every study's job opens its run folder with ``open_run``
(and every suite runs its unfinished jobs with ``experiments.core.task.run_pending``).

Job side (a job is a function of (config, network, seed, folder, progress) alone):

    with open_run(folder, config, network, seed, dataset) as run:  # claim, lock, heartbeat
        if run.finished:              # the folder is done: its records, and nothing runs
            return run.records
        run.start(device, first, total)   # a provenance session for steps first..total
        run.add(record)                   # one metrics.jsonl line per finished step (atomic)
    return run.records                # a normal exit closes the session and writes ``done``

``run.records`` starts as what metrics.jsonl holds (a resumed job keeps the part it trusts with
``run.keep``); a job that must not be marked done yet (a step left for a missing package) says
``run.unfinished()``. An exception leaves the folder resumable: no ``done``, the session open.
The folder's lock (experiments/core/runs.py ``run_lock``) is held, and touched by a heartbeat,
for the whole block: two processes never run one job at once; a job locked elsewhere raises
RunLocked, which the launchers turn into "try again later".

A launcher that claimed and locked the folder itself, in another process, runs the job inside
``hosted(sync)``: open_run then neither claims nor locks, and ``sync()`` runs each time the
job adds a record, when everything the job wrote for its previous record is complete (the Ray
launcher's driver holds the lock while the job runs on a node, and ``sync`` sends the node's
files back to it).
"""

import contextvars
import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from experiments.core.records import atomic_write, read_jsonl, write_jsonl
from experiments.core.runs import (claim_dir, close_session, is_done, mark_done, open_session,
                                   resolved_config, run_lock)

LOCK_WAIT_SECONDS = 5  # a job locked elsewhere gives its worker back this soon, to retry later


_HOSTED = contextvars.ContextVar("hosted", default=None)  # the sync of a hosted job


@contextmanager
def hosted(sync):
    """Run the block's jobs as a launcher's that claimed and locked their folders in another
    process: open_run neither claims nor locks, and calls ``sync()`` before each record."""
    token = _HOSTED.set(sync)
    try:
        yield
    finally:
        _HOSTED.reset(token)


class Run:
    """An open run folder: its records so far, and the session this process adds."""

    def __init__(self, folder, finished, sync=None):
        self.folder = Path(folder)
        self.records = read_jsonl(self.folder / "metrics.jsonl")
        self.finished = finished
        self.started = None  # perf_counter at start(); None: this process ran no step
        self.complete = True
        self.sync = sync

    def start(self, device, first, total, **extra):
        """Open a provenance session for steps ``first``..``total`` on ``device``."""
        device = torch.device(device) if isinstance(device, str) else device
        open_session(self.folder, device, first, total, **extra)
        self.started = time.perf_counter()

    def keep(self, records):
        """Resume from ``records`` (the part of metrics.jsonl the job trusts)."""
        self.records = list(records)

    def add(self, record):
        """Append one finished step's record and rewrite metrics.jsonl atomically."""
        if self.sync is not None:
            self.sync()
        self.records.append(record)
        write_jsonl(self.folder / "metrics.jsonl", self.records)

    def unfinished(self):
        """Close the session on exit but do not mark the run done (a rerun resumes it)."""
        self.complete = False

    def close(self):
        if self.started is None:
            return
        close_session(self.folder, time.perf_counter() - self.started)
        if self.complete:
            mark_done(self.folder, len(self.records))


@contextmanager
def open_run(folder, config, network, seed, dataset, lock_wait=LOCK_WAIT_SECONDS):
    """The lifecycle of one job's run folder (see the module docstring).

    ``dataset`` is what the data is (a JSON-safe dict: data.dataset_info), written as
    dataset.json for reports that read no data.
    """
    folder = Path(folder)
    if is_done(folder):
        yield Run(folder, finished=True)
        return
    sync = _HOSTED.get()
    if sync is None:
        claim_dir(folder, resolved_config(config, network, seed))
    with run_lock(folder, wait=lock_wait) if sync is None else nullcontext():
        if is_done(folder):  # finished by another process while we waited for the lock
            yield Run(folder, finished=True)
            return
        atomic_write(folder / "dataset.json", json.dumps(dataset, indent=2) + "\n")
        run = Run(folder, finished=False, sync=sync)
        yield run
        run.close()
