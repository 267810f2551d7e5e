"""Confidence intervals for frequencies (accuracies, match rates): pure numpy and scipy."""

import numpy as np
from scipy import stats


def clopper_pearson(matches, trials, level=0.95):
    """Exact two-sided binomial confidence interval (lo, hi) for matches / trials.

    lo = Beta quantile (1 - level)/2 of Beta(k, N - k + 1), hi = quantile (1 + level)/2 of
    Beta(k + 1, N - k); lo = 0 when k = 0 and hi = 1 when k = N.
    """
    k, n = np.asarray(matches, float), np.asarray(trials, float)
    tail = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(tail, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1.0 - tail, k + 1, n - k), 1.0)
    return lo, hi
