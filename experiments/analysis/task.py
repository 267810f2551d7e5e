"""The analysis task: ``python run.py configs/mnist_analysis.yaml``.

One job per (network, seed): the shipped seed-42 weights by default (``source: pretrained``,
minutes on a fresh clone), or any train experiment's run folders (``source: runs``,
``runs: results/mnist_table1``, several seeds). Records and report: experiments/analysis/job.py
and report.py.
"""

from experiments.analysis.config import SMOKE_OVERRIDES, AnalysisConfig
from experiments.analysis.job import run_job, summary
from experiments.core.config import ConfigError
from experiments.core.launch import launch
from experiments.core.runs import experiment_dir, prepare
from experiments.core.suite import load_suite
from experiments.core.trained import network_source

__all__ = ["load", "run", "describe"]


def load(path, overrides=(), smoke=False):
    return load_suite(path, AnalysisConfig, overrides, smoke, SMOKE_OVERRIDES)


def run(suite, out_root, force=False, launcher="local", **options):
    """Check that every network's weights exist, then analyse the pending ones."""
    for name in suite.run:
        for seed in suite.seeds:
            network_source(suite.jobs[name], name, seed)
    pending = prepare(suite, out_root, force)
    total = len(suite.run) * len(suite.seeds)
    print(f"{suite.experiment}: {total} jobs, {total - len(pending)} already done, "
          f"{len(pending)} to run")
    launch(pending, run_job, summary, launcher, **options)
    return experiment_dir(suite, out_root)


def describe(suite, out_dir):
    raise ConfigError(f"{suite.source}: --describe lists the networks of a train experiment; "
                      f"run that experiment's config with it")
