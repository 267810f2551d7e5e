"""The corruptions task: ``python run.py configs/mnist_corruptions.yaml``.

One job per (network, seed), weights as in the adversarial task; records:
experiments/robust/corruptions.py; report: corruptions_report.py.
"""

from experiments.core.task import Task
from experiments.core.trained import check_weights
from experiments.robust.config import CORRUPTIONS_SMOKE, CorruptionsConfig
from experiments.robust.corruptions import run_job, summary, write_mosaics
from experiments.robust.corruptions_report import doc_blocks, write_report


def describe(suite, out_dir):
    """Print each network's corruptions and severities."""
    for name in suite.run:
        cfg = suite.jobs[name]
        print(f"{name}: MNIST-C {', '.join(cfg.mnist_c) or '-'}; extra "
              f"{', '.join(cfg.corruptions) or '-'} at severities "
              f"{', '.join(map(str, cfg.severities))}")


TASK = Task("corruptions", CorruptionsConfig, run_job, summary, report=write_report,
            describe_suite=describe, smoke_overrides=CORRUPTIONS_SMOKE, check=check_weights,
            doc_blocks=doc_blocks, before_jobs=write_mosaics)
