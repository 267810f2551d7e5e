"""The analysis task: ``python run.py configs/mnist_analysis.yaml``.

One job per (network, seed): the shipped seed-42 weights by default (``source: pretrained``,
minutes on a fresh clone), or any train experiment's run folders (``source: runs``,
``runs: results/mnist_table1``, several seeds). Records and report: experiments/analysis/job.py
and report.py.
"""

from experiments.analysis.config import SMOKE_OVERRIDES, AnalysisConfig
from experiments.analysis.job import run_job, summary
from experiments.analysis.report import doc_blocks, write_report
from experiments.core.task import Task
from experiments.core.trained import check_weights

TASK = Task("analysis", AnalysisConfig, run_job, summary, report=write_report,
            smoke_overrides=SMOKE_OVERRIDES, check=check_weights, doc_blocks=doc_blocks)
