"""Monte-Carlo estimates for Section 3: how often a random sparse vector matches a stored one.

All estimators are vectorised numpy, driven by a seeded ``numpy.random.Generator``, and work in
chunks of at most ``CHUNK`` numbers so memory stays small at any trial count.

- ``binary_matches``: the plain frequency of Figure 2. One trial draws the overlap of a random
  a-of-n binary vector with the stored s-of-n vector exactly (it is hypergeometric), so a trial
  costs O(1) instead of O(n). A frequency still needs about 10 / p trials to see a probability
  p: at 10^6 trials it resolves p down to about 1e-5, no further.
- ``binary_importance``: importance sampling of the same event; resolves any probability.
- ``scalar_matches``: the plain frequency of Figure 3 (scalar weights and inputs).
"""

import math

import numpy as np
from scipy import stats

from experiments.core.intervals import clopper_pearson

CHUNK = 1 << 22


def chunks(total, size=CHUNK):
    """Sizes of consecutive chunks that add up to ``total``."""
    for start in range(0, total, size):
        yield min(size, total - start)


def binary_matches(n, a, s, theta, trials, rng):
    """How many of ``trials`` random a-of-n binary vectors overlap a stored s-of-n vector in at
    least ``theta`` bits. The overlap is Hypergeometric(population n, s successes, a draws)."""
    return sum(int((rng.hypergeometric(s, n - s, a, size=m) >= theta).sum())
               for m in chunks(trials))


def binary_importance(n, a, s, theta, trials, rng, level):
    """Importance-sampling estimate of P(overlap >= theta) with a ``level`` interval: (p, lo, hi).

    Draw the s stored bits one at a time without replacement against a fixed vector with a
    active bits of n (by symmetry the overlap has the paper's law). With h hits after j draws,
    the next bit is a hit with p_j = (a - h) / (n - j). We draw it with the tilted
    q_j = p_j e^g / (1 - p_j + p_j e^g) while h < theta (q_j = p_j after) and weight the path by
    L = prod_j (p_j / q_j)^hit_j ((1 - p_j) / (1 - q_j))^(1 - hit_j), so that
    E_q[L 1(h >= theta)] = P(match) exactly. g = logit(theta / s) - logit(a / n) (0 if negative)
    moves the hit rate to where matches are common: no closed-form tail is used anywhere. The
    interval is normal (mean +- z standard errors); with g = 0 the estimate is a plain
    frequency and gets the exact binomial interval.
    """
    target = min(max(theta / s, 0.5 / s), 1.0 - 0.5 / s)  # keeps g finite when theta = s
    g = max(0.0, _logit(target) - _logit(a / n))
    total = total_sq = 0.0
    for m in chunks(trials, CHUNK // s):
        w = _importance_weights(n, a, s, theta, g, m, rng)
        total, total_sq = total + w.sum(), total_sq + (w * w).sum()
    mean = total / trials
    if g == 0.0:
        lo, hi = clopper_pearson(round(total), trials, level)
        return mean, float(lo), float(hi)
    var = max(total_sq / trials - mean * mean, 0.0) * trials / max(trials - 1, 1)
    half = stats.norm.ppf((1 + level) / 2) * math.sqrt(var / trials)
    return mean, mean - half, mean + half


def _importance_weights(n, a, s, theta, g, m, rng):
    """L 1(h >= theta) for m tilted paths, see ``binary_importance``. # (m,)"""
    hits = np.zeros(m, dtype=np.int64)
    log_w = np.zeros(m)
    for j in range(s):
        p = np.clip((a - hits) / (n - j), 0.0, 1.0)
        q = np.where(hits < theta, p * math.exp(g) / (1.0 - p + p * math.exp(g)), p)
        hit = rng.random(m) < q
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 only in the branch not taken
            log_w += np.where(hit, np.log(p / q), np.log((1.0 - p) / (1.0 - q)))
        hits += hit
    return np.exp(log_w) * (hits >= theta)


def _logit(p):
    return math.log(p) - math.log1p(-p)


def scalar_matches(pmfs, thresholds, pairs, rng):
    """Matches among ``pairs`` independent (weight, input) pairs, for each point.

    A pair's dot product is (2S / k_w^2) * sum_{j <= b} U_j V_j over its b shared non-zero
    positions, U ~ U(-1, 1), V ~ U(0, 1), b ~ Hypergeometric; it matches iff that sum >= t.
    Per point, the number of pairs with each overlap b is drawn exactly (multinomial over
    ``pmfs[i]``, the law of b); their sums come from one pool per b shared by all points (common
    random numbers: points are correlated, pairs within a point independent). Only b > t can
    match, since every |U V| < 1.
    """
    counts = [rng.multinomial(pairs, pmf / pmf.sum()) for pmf in pmfs]  # (points, k_w + 1)
    needed = np.zeros(len(pmfs[0]), dtype=np.int64)
    for c, t in zip(counts, thresholds):
        needed = np.maximum(needed, np.where(np.arange(len(c)) > t, c, 0))
    pools = [product_sums(b, int(rows), rng) for b, rows in enumerate(needed)]
    return [sum(int((pools[b][:c[b]] >= t).sum()) for b in range(len(c)) if b > t)
            for c, t in zip(counts, thresholds)]


def product_sums(b, rows, rng):
    """``rows`` independent sums U_1 V_1 + ... + U_b V_b, U ~ U(-1, 1), V ~ U(0, 1). # (rows,)"""
    out = np.zeros(rows, dtype=np.float32)
    start = 0
    for m in chunks(rows, CHUNK // max(b, 1)):
        u = rng.random((m, b), dtype=np.float32) * 2.0 - 1.0
        u *= rng.random((m, b), dtype=np.float32)
        out[start:start + m] = u.sum(axis=1)
        start += m
    return out
