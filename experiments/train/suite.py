"""The train task: an experiment file of networks x seeds, trained and swept for noise.

    python run.py configs/mnist_table1.yaml --jobs 2     every pending (network, seed), resumable
    python run.py configs/mnist_table1.yaml --launcher ray   the same jobs as Ray tasks

Each job is ``experiments.train.job.run_job``; its run folder is described in
experiments/core/runs.py. Before the jobs start, the experiment folder gets the dataset's
noisy examples (``noisy_examples.npz``: Figure 5A's digits for MNIST), which the report draws.
"""

import io

import numpy as np

from data import noisy_examples
from experiments.core.launch import launch
from experiments.core.records import atomic_write
from experiments.core.runs import EXAMPLES, experiment_dir, prepare
from experiments.core.suite import load_suite
from experiments.train.config import SMOKE_OVERRIDES, JobConfig
from experiments.train.describe import describe
from experiments.train.job import run_job, summary

__all__ = ["load", "run", "describe"]  # the task interface experiments/cli.py calls


def load(path, overrides=(), smoke=False):
    """The Suite of an experiment file, each network a validated JobConfig."""
    return load_suite(path, JobConfig, overrides, smoke, SMOKE_OVERRIDES)


def run(suite, out_root, force=False, launcher="local", **options):
    """Run every unfinished job of ``suite``; return the experiment folder."""
    pending = prepare(suite, out_root, force)
    total = len(suite.run) * len(suite.seeds)
    print(f"{suite.experiment}: {total} jobs, {total - len(pending)} already done, "
          f"{len(pending)} to run")
    exp_dir = experiment_dir(suite, out_root)
    if pending:
        write_examples(suite.jobs[suite.run[0]].data, exp_dir)
        launch(pending, run_job, summary, launcher, **options)
    return exp_dir


def write_examples(data_cfg, exp_dir):
    """Write the dataset's noisy examples into ``exp_dir`` once (they depend on the data only)."""
    path = exp_dir / EXAMPLES
    if path.is_file():
        return
    examples = noisy_examples(data_cfg)
    if examples is not None:  # atomic: two drivers of one suite may write it at once
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **examples)
        atomic_write(path, buffer.getvalue())
