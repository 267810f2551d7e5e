"""Model selection: which epoch of a run its scores are read from (one place for the rule).

  best:  the epoch with the highest clean test accuracy, the first one on ties. The paper's
         selection; it selects on the test set.
  last:  the final epoch run, with no selection.
  valid: the epoch with the highest accuracy on the held-out validation images (first one on
         ties), for runs trained with ``data.validation`` > 0: an honest selection, made on
         images that neither training nor the test set uses.
"""


def best_epoch(records):
    """The record with the highest clean test accuracy; the earliest one on ties."""
    return max(records, key=lambda r: r["test_accuracy"])  # max keeps the first maximum


def last_epoch(records):
    return records[-1]


def validation_epoch(records):
    """The record with the highest validation accuracy; the earliest one on ties."""
    return max(records, key=lambda r: r["validation_accuracy"])


SELECTIONS = {"best": best_epoch, "last": last_epoch}
HELD_OUT = {"valid": validation_epoch}


def selections(runs_records):
    """The selections that apply to every one of ``runs_records`` (lists of epoch records):
    best and last always, valid when every record has a validation accuracy."""
    held_out = all("validation_accuracy" in r for records in runs_records for r in records)
    return {**SELECTIONS, **(HELD_OUT if held_out and any(runs_records) else {})}
