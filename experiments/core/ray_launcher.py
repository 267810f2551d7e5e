"""The Ray launcher: every pending job of a suite as a Ray task, on a cluster or on this machine.

    python run.py CONFIG --launcher ray [--address HOST:PORT] [--cpus-per-job N] [--gpus-per-job F]

The cluster is ``--address``, else the one Ray's own convention names (``RAY_ADDRESS``, or a
cluster started by ``ray start`` on this machine), else a new Ray instance on this machine's
cores. A task runs ``run_one``, as the local launcher does, in the driver's working directory
with the repository on PYTHONPATH (nothing is uploaded): the repository must be at the same
path on every node, and the run folders and datasets on a filesystem every node shares; a task
that cannot see its run folder stops with a message that says so.

Each job gets ``cpus_per_job`` CPUs, which are its torch threads (set inside the task, as Ray
reuses worker processes), and ``gpus_per_job`` GPUs (0.25 packs four jobs on one GPU, which
``device: auto`` then uses). A task whose node or worker process dies is rerun elsewhere, up to
MAX_RETRIES times, and resumes from the job's last finished epoch; an exception the job itself
raises is not retried (it would fail again): the suite reports it and finishes the others.
"""

import os
import socket

import torch

from experiments.core.config import ConfigError
from experiments.core.launch import drive, run_one
from experiments.core.records import REPO
from experiments.core.runs import NotShared
from experiments.core.speed import keep_freed_memory

try:
    import ray
except ImportError:
    raise ConfigError("--launcher ray: Ray is not installed; "
                      "pip install -r requirements-ray.txt") from None

MAX_RETRIES = 3  # reruns of a task lost with its node or worker process


def run_ray(jobs, job_fn, summary, address=None, cpus_per_job=1, gpus_per_job=0):
    """Run ``jobs`` as Ray tasks of ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs each."""
    ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
             logging_level="WARNING")
    try:
        task = _task.options(num_cpus=cpus_per_job, num_gpus=gpus_per_job,
                             max_retries=MAX_RETRIES, retry_exceptions=False)
        cwd = os.getcwd()
        drive(jobs, lambda job: task.remote(job_fn, job, cwd).future(),
              lambda name, seed, result: f"{summary(name, seed, result[0])} (node {result[1]})",
              cause=_cause)
    finally:
        ray.shutdown()


@ray.remote
def _task(job_fn, job, cwd):
    """One job on a worker: its records and the id of the node that ran it."""
    _enter(cwd)
    context = ray.get_runtime_context()
    torch.set_num_threads(max(1, int(context.get_assigned_resources().get("CPU", 1))))
    keep_freed_memory()
    return run_one(job_fn, job, False), context.get_node_id()[:8]


def _enter(cwd):
    """Work in the driver's directory, so that relative paths mean what they mean there."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        raise NotShared(f"{cwd}: the driver's working directory is not on host "
                        f"{socket.gethostname()}: the repository must be at the same path on "
                        f"every node") from None


def _cause(error):
    """The job's own exception inside Ray's wrapper (whose text is the task's traceback)."""
    return error.cause if isinstance(error, ray.exceptions.RayTaskError) else error
