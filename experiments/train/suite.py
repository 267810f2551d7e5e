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
from experiments.core.records import atomic_write
from experiments.core.runs import EXAMPLES
from experiments.core.task import Task
from experiments.report import doc_blocks, write_report
from experiments.train.config import SMOKE_OVERRIDES, JobConfig
from experiments.train.describe import describe
from experiments.train.job import run_job, summary


def write_examples(suite, exp_dir):
    """Write the dataset's noisy examples into ``exp_dir`` once (they depend on the data only)."""
    path = exp_dir / EXAMPLES
    if path.is_file():
        return
    examples = noisy_examples(suite.jobs[suite.run[0]].data)
    if examples is not None:  # atomic: two drivers of one suite may write it at once
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **examples)
        atomic_write(path, buffer.getvalue())


TASK = Task("train", JobConfig, run_job, summary, report=write_report, describe_suite=describe,
            smoke_overrides=SMOKE_OVERRIDES, before_jobs=write_examples,
            doc_blocks=doc_blocks)
