"""Summary measures that more than one study records or reports (pure numpy)."""

import math

import numpy as np


def entropy_ratio(values):
    """Duty-cycle entropy: H(p) / log(n) for p = values / sum(values), H = -sum p log p; 1.0
    when all n units are equally active (work evenly spread), 0 when one unit does it all
    (nan when undefined)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2 or not np.isfinite(v).all() or v.sum() <= 0:
        return math.nan
    p = v[v > 0] / v.sum()
    return float(-(p * np.log(p)).sum() / math.log(v.size))
