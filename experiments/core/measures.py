"""Summary measures that more than one study records or reports (pure numpy).

Two duty-cycle entropies: ``entropy_ratio``, H(p) / log n of the duty cycles normalised to a
distribution (how evenly the work is spread over the units), and ``binary_entropy_ratio``, the
authors' (nupic.torch): each unit's binary entropy at its duty cycle, summed, over the maximum
at the target density k/n (how close every unit is to being active k/n of the time).
"""

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


def binary_entropy(p):
    """-p log p - (1 - p) log(1 - p), elementwise, 0 at p = 0 and 1 (natural log)."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -p * np.log(p) - (1 - p) * np.log1p(-p)
    return np.nan_to_num(h, nan=0.0)


def binary_entropy_ratio(duty_cycles, k, n):
    """The authors' duty-cycle entropy (nupic.torch's ``entropy`` / ``max_entropy``): the sum of
    the binary entropies H(d_i) of the duty cycles over its maximum, the same number of duty
    cycles all at the target density k/n. 1.0 when every unit is active k/n of the time."""
    d = np.asarray(duty_cycles, dtype=float)
    if d.size == 0 or not 0 < k < n or not np.isfinite(d).all():
        return math.nan
    return float(binary_entropy(d).sum() / (d.size * binary_entropy(k / n)))
