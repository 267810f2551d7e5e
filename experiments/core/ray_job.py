"""What a Ray task does on a cluster node: one job, in the driver's run folder (a shared
filesystem) or in node-local scratch, streaming back what the driver needs.

The task (``run_on_node``, a generator: Ray streams what it yields) runs code that came with the
job (Ray's ``working_dir``) and

1. says where it runs ({"host", "node"}) and checks that this node runs the driver's library
   versions (``NodeMismatch`` otherwise);
2. places the job: with a shared filesystem in the driver's run folder and working directory,
   as the local launcher would; else in ``scratch_root()/<key>``, filled from the driver's
   snapshot of the folder (its last checkpoint and records);
3. points the job at this node's copy of its data (``node_data``) and at absolute paths for
   what it reads from the driver's disk (``source: runs``);
4. runs the job in a thread, inside ``hosted`` (the driver holds the folder's lock) and
   ``launched_by`` (provenance records the driver's command and commit), and yields as they
   come: the lines it prints ({"lines"}), in scratch the files it wrote each time it adds a
   record and at the end ({"files"}), its records ({"records"}), or before re-raising its
   exception the text of its error.txt ({"report"}).
"""

import functools
import hashlib
import json
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
from contextlib import suppress
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

import ray
import torch

from data import DataConfig, DataError, prepare_dataset
from experiments.core.config import ConfigError, to_dict
from experiments.core.drive import error_report
from experiments.core.lifecycle import hosted
from experiments.core.records import launched_by, versions
from experiments.core.run_files import Sent, write_files
from experiments.core.runs import check_visible
from experiments.core.speed import keep_freed_memory
from experiments.core.trained import TrainedSource


class NodeMismatch(ConfigError):
    """A node runs other library versions than the driver: its numbers would differ."""


@dataclass(frozen=True)
class Plan:
    """How the driver wants a job run: everything a node needs besides the job itself."""
    shared: bool  # the run folder is the driver's, on a shared filesystem
    cwd: str  # the driver's working directory: relative paths in configs mean it
    origin: dict  # records.origin() of the driver
    versions: dict  # node_versions() of the driver
    key: str  # the job's name in scratch and storage: <experiment digest>/<network>/seed-<s>
    transport: object  # run_files.ObjectStore or Storage
    seed: object  # the transport's message of the driver's folder (scratch only)
    attempt: str  # "2 of 4"


def node_versions():
    """What a node must share with the driver: Python, Ray and the libraries of versions()."""
    return {**versions(), "ray": ray.__version__}


def version_mismatch(driver, here, host):
    """One line for the versions in which ``here`` differs from ``driver``, or None."""
    differ = [f"{name} {here.get(name)} (driver: {value})" for name, value in driver.items()
              if here.get(name) != value]
    if not differ:
        return None
    return (f"node {host} runs {', '.join(differ)}: install the driver's requirements on every "
            f"node (pip install -r requirements.txt -r requirements-ray.txt)")


def check_versions(driver):
    problem = version_mismatch(driver, node_versions(), socket.gethostname())
    if problem:
        raise NodeMismatch(problem)


def scratch_root():
    """Where jobs of this node run when the run folders are not shared: TMPDIR/dense-scratch.
    Besides the run folders of running jobs it keeps this node's caches: datasets/ (where the
    node does not see the driver's) and each experiment's transfer/ examples."""
    return Path(tempfile.gettempdir()) / "dense-scratch"


def digest(text):
    return hashlib.sha256(str(text).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- data and inputs on this node

def node_data(data, cwd):
    """The DataConfig a job here reads: the driver's prepared copy where this node sees it
    (a shared filesystem or a read-only dataset volume at the same path), else this node's own
    copy in scratch, fetched or made once per node (the dataset's own lock)."""
    return _node_data(json.dumps(to_dict(data), sort_keys=True), cwd)


@functools.lru_cache(maxsize=None)
def _node_data(data, cwd):
    data = DataConfig(**json.loads(data))
    theirs = replace(data, root=str(Path(cwd, data.root)))
    try:
        prepare_dataset(replace(theirs, download=False))
        return theirs
    except DataError:
        pass
    own = replace(data, root=str(scratch_root() / "datasets" / digest(theirs.root)))
    prepare_dataset(own)
    return own


def data_fields(config):
    """[(field name, DataConfig)] of a job config: the data it reads."""
    if not is_dataclass(config):
        return []
    return [(f.name, getattr(config, f.name)) for f in fields(config)
            if isinstance(getattr(config, f.name), DataConfig)]


def placed(config, cwd):
    """``config`` as this node runs it: its data this node's copy (``node_data``), and the run
    folders of ``source: runs`` at their absolute path on the driver (which the driver checked
    that every node sees). Only paths change; the run's identity stays the driver's."""
    if not is_dataclass(config):
        return config
    changes = {name: node_data(data, cwd) for name, data in data_fields(config)}
    if isinstance(config, TrainedSource) and config.source == "runs":
        changes["runs"] = str(Path(cwd, config.runs))
    return replace(config, **changes)


def scratch_folder(key, files):
    """A fresh folder in this node's scratch holding ``files`` (the driver's snapshot)."""
    folder = scratch_root() / key
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_files(folder, files)
    return folder


# ---------------------------------------------------------------- the task

def run_on_node(job_fn, job, plan):
    """Ray's task: one job on this node, streamed back to the driver (see the module doc)."""
    context = ray.get_runtime_context()
    yield {"host": socket.gethostname(), "node": context.get_node_id()[:8]}
    check_versions(plan.versions)
    resources = context.get_assigned_resources()
    if not resources.get("GPU"):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job never sees a GPU (device: auto)
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))  # Ray reuses worker processes
    keep_freed_memory()
    if plan.shared:
        os.chdir(plan.cwd)
        check_visible(job.folder)
        folder = job.folder
    else:
        folder = scratch_folder(plan.key, plan.transport.receive(plan.key, plan.seed))
    try:
        config = placed(job.config, plan.cwd)
        yield from _streamed(lambda: job_fn(config, job.name, job.seed, folder, False),
                             None if plan.shared else Sent(folder), job, plan)
    finally:
        if not plan.shared:  # its files are back on the driver; node caches stay
            shutil.rmtree(folder, ignore_errors=True)
            with suppress(OSError):  # the network's folder, once it is empty
                folder.parent.rmdir()


def _streamed(work, sent, job, plan):
    """Run ``work()`` in a thread; yield its lines and files as they come, then its records
    (or its report, then its exception)."""
    messages, done = queue.Queue(), object()

    def sync():  # in the job's thread, when the job adds a record
        if sent is not None:
            messages.put({"files": plan.transport.send(plan.key, sent.changed())})

    def body():
        try:
            with hosted(sync), launched_by(plan.origin), _printing_to(messages):
                records = work()
            sync()
            messages.put({"records": records})
        except BaseException as error:  # noqa: B036 (sent back, then raised by the task)
            sync()
            messages.put({"report": error_report(job, error, socket.gethostname(),
                                                 plan.attempt), "error": error})
        finally:
            messages.put(done)

    threading.Thread(target=body, daemon=True).start()
    for message in iter(messages.get, done):
        error = message.pop("error", None)
        yield message
        if error is not None:
            raise error


class _printing_to:
    """Send what the block prints to stdout, line by line, as {"lines": [...]} messages: the
    driver writes them above its progress bar (Ray's own log forwarding would break it)."""

    def __init__(self, messages):
        self.messages, self.partial = messages, ""

    def write(self, text):
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        if lines:
            self.messages.put({"lines": lines})
        return len(text)

    def flush(self):
        pass

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self
        return self

    def __exit__(self, *exc):
        sys.stdout = self.saved
        if self.partial:
            self.messages.put({"lines": [self.partial]})
