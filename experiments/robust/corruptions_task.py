"""The corruptions task: ``python run.py configs/mnist_corruptions.yaml``.

One job per (network, seed), weights as in the adversarial task; records:
experiments/robust/corruptions.py; report: corruptions_report.py.
"""

from experiments.core.suite import load_suite
from experiments.robust.config import CORRUPTIONS_SMOKE, CorruptionsConfig
from experiments.robust.corruptions import run_job, summary
from experiments.robust.suite import run_suite

__all__ = ["load", "run", "describe"]


def load(path, overrides=(), smoke=False):
    return load_suite(path, CorruptionsConfig, overrides, smoke, CORRUPTIONS_SMOKE)


def run(suite, out_root, force=False, launcher="local", **options):
    """Check that every network's weights exist, then evaluate the pending ones."""
    return run_suite(suite, out_root, run_job, summary, force, launcher, options)


def describe(suite, out_dir):
    """Print each network's corruptions and severities."""
    for name in suite.run:
        cfg = suite.jobs[name]
        print(f"{name}: {', '.join(cfg.corruptions)} at severities "
              f"{', '.join(map(str, cfg.severities))}")
