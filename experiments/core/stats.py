"""Paired comparisons: the one statistics module every report's comparisons go through.

Two conditions measured on the same units pair: the same seeds (same data order, same noisy
test sets) for training runs, the same images for attacks and corruptions. For paired values
a_i, b_i (i = 1..n) with differences d_i = a_i - b_i:

    mean      d̄ = sum d_i / n
    t         d̄ ± t_{n-1, 0.975} s_d / sqrt(n)          (scipy.stats.t; needs n >= 2)
    bootstrap the 2.5% and 97.5% percentiles of d̄ over resamples of the n pairs
              (scipy.stats.bootstrap, seeded: the same interval on every run)
    sign      exact two-sided binomial test of #(d_i > 0) among the non-zero d_i, p = 1/2
              (scipy.stats.binomtest); with n = 5 all of one sign gives p = 0.0625 at best
    Wilcoxon  signed-rank test of the d_i (scipy.stats.wilcoxon; exact for small n without
              ties; zeros dropped); 1.0 when every d_i is 0

For per-image 0/1 outcomes (correct or not) on the same images, ``mcnemar``: the exact McNemar
test (a binomial test on the discordant images) and the difference in accuracy with a 95%
interval from the paired bootstrap over images.

``claim`` writes the one sentence a report may say about a comparison: it always states n,
the interval and the tests, and refuses to write one without n; ``mcnemar_claim`` is its
equivalent for a McNemar comparison (n images, the bootstrap interval, the exact p).
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Paired:
    """The paired comparison of a and b: differences a - b over ``n`` units."""
    n: int
    mean: float
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    higher: int  # units with a > b
    lower: int  # units with a < b
    sign_p: float
    wilcoxon_p: float
    level: float = LEVEL


def paired(a, b, level=LEVEL, resamples=RESAMPLES, seed=BOOTSTRAP_SEED):
    """The Paired comparison of the equally long sequences ``a`` and ``b`` (unit i of one
    pairs with unit i of the other)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired: need two equally long, non-empty 1-d sequences, got "
                         f"shapes {a.shape} and {b.shape}")
    d = a - b
    n, mean = d.size, float(d.mean())
    t_low, t_high = t_interval(d, level)
    boot_low, boot_high = bootstrap_interval(d, level, resamples, seed)
    higher, lower = int((d > 0).sum()), int((d < 0).sum())
    sign_p = float(stats.binomtest(higher, higher + lower).pvalue) if higher + lower else 1.0
    return Paired(n, mean, t_low, t_high, boot_low, boot_high, higher, lower, sign_p,
                  wilcoxon_p(d), level)


def t_test_p(comparison):
    """The two-sided paired t-test p of a Paired, from its t interval (the interval is
    mean +- t_crit * s / sqrt(n), so it holds the test's statistic): scipy.stats.ttest_rel's
    p for the same pairs. nan for fewer than 2 units."""
    c = comparison
    if c.n < 2:
        return float("nan")
    scale = (c.t_high - c.t_low) / 2 / stats.t.ppf(0.5 + c.level / 2, c.n - 1)  # s / sqrt(n)
    if scale == 0:
        return 1.0 if c.mean == 0 else 0.0
    return float(2 * stats.t.sf(abs(c.mean) / scale, c.n - 1))


def adjusted_p(ps):
    """Benjamini-Hochberg adjusted p of several tests run together
    (scipy.stats.false_discovery_control): those below 0.05 hold a false-discovery rate of 5%."""
    return [float(q) for q in stats.false_discovery_control(np.asarray(ps, dtype=float))]


def t_interval(d, level=LEVEL):
    """The t interval of the mean of ``d`` (nan, nan for fewer than 2 values)."""
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * np.std(d, ddof=1) / math.sqrt(n)
    return float(np.mean(d) - half), float(np.mean(d) + half)


def bootstrap_interval(d, level=LEVEL, resamples=RESAMPLES, seed=BOOTSTRAP_SEED):
    """The percentile bootstrap interval of the mean of ``d`` (the mean itself, twice, when
    every value is equal or there is one value)."""
    d = np.asarray(d, dtype=float)
    if d.size < 2 or np.all(d == d[0]):
        return float(d.mean()), float(d.mean())
    result = stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilcoxon_p(d):
    d = np.asarray(d, dtype=float)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


@dataclass(frozen=True)
class McNemar:
    """Two classifiers on the same ``n`` images: accuracies, the discordant images, the exact
    McNemar p, and the accuracy difference (a - b) with its paired-bootstrap interval."""
    n: int
    accuracy_a: float
    accuracy_b: float
    only_a: int  # images a gets right and b wrong
    only_b: int
    p: float
    diff: float
    low: float
    high: float
    level: float = LEVEL


def mcnemar(correct_a, correct_b, level=LEVEL, resamples=RESAMPLES, seed=BOOTSTRAP_SEED):
    """McNemar's exact test and the paired accuracy difference of two 0/1 sequences."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"mcnemar: need two equally long, non-empty 0/1 sequences, got "
                         f"shapes {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = float(stats.binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
    low, high = bootstrap_interval(a.astype(float) - b.astype(float), level, resamples, seed)
    return McNemar(a.size, float(a.mean()), float(b.mean()), only_a, only_b, p,
                   float(a.mean() - b.mean()), low, high, level)


def claim(subject, comparison, what, units="seeds", source=None, digits=0):
    """One sentence stating ``comparison`` (a Paired) of ``subject`` ("Sparse CNN-2 - Dense
    CNN-2") on ``what`` ("noise score") with its n, intervals and tests; ``source`` names the
    records or command. A comparison without n is refused."""
    n = getattr(comparison, "n", None)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"claim: {subject}: a comparison needs its number of {units} (n)")
    c, f = comparison, (lambda v: _signed(v, digits))
    if n < 2:
        body = f"{f(c.mean)} on the one {units[:-1]} (no interval or test with n = 1)"
    else:
        body = (f"{f(c.mean)} (mean of {n} paired {units}; {c.level:.0%} interval "
                f"{f(c.t_low)} to {f(c.t_high)} by t, {f(c.boot_low)} to {f(c.boot_high)} "
                f"by bootstrap); higher on {c.higher}, lower on {c.lower} of {n} "
                f"(sign test p = {_p(c.sign_p)}, Wilcoxon p = {_p(c.wilcoxon_p)})")
    return f"{subject}, {what}: {body}" + (f"; {source}" if source else "") + "."


def mcnemar_claim(subject, comparison, what, source=None, digits=1):
    """One sentence stating ``comparison`` (a McNemar) of ``subject`` ("Sparse CNN-2 - Dense
    CNN-2") on ``what`` ("worst-case accuracy at eps 0.1"), in accuracy points, with its n,
    interval, discordant images and exact p. A comparison without n is refused."""
    n = getattr(comparison, "n", None)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"mcnemar_claim: {subject}: a comparison needs its number of images (n)")
    c, f = comparison, (lambda v: _signed(100 * v, digits))
    body = (f"{f(c.diff)} points ({100 * c.accuracy_a:.{digits}f}% vs "
            f"{100 * c.accuracy_b:.{digits}f}% on the same {n:,} images; {c.level:.0%} paired "
            f"bootstrap interval {f(c.low)} to {f(c.high)}); right only under the first on "
            f"{c.only_a}, only under the second on {c.only_b} (exact McNemar p = {_p(c.p)})")
    return f"{subject}, {what}: {body}" + (f"; {source}" if source else "") + "."


def _signed(value, digits):
    if value != value:
        return "n/a"
    text = f"{value:+,.{digits}f}"
    return "0" if float(text.replace(",", "")) == 0 else text


def _p(p):
    return f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"
