"""The report of a train experiment: tables and figures from its run records alone.

Imports no model and no dataset: what the data is comes from each run's dataset.json.
"""

from experiments.report.write import doc_blocks, write_report

__all__ = ["doc_blocks", "write_report"]
