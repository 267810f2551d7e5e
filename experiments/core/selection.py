"""Model selection: which epoch of a run its scores are read from (one place for the rule).

  best: the epoch with the highest clean test accuracy, the first one on ties. The paper's
        selection; it selects on the test set.
  last: the final epoch run, with no selection (the honest variant).
"""


def best_epoch(records):
    """The record with the highest clean test accuracy; the earliest one on ties."""
    return max(records, key=lambda r: r["test_accuracy"])  # max keeps the first maximum


def last_epoch(records):
    return records[-1]


SELECTIONS = {"best": best_epoch, "last": last_epoch}
