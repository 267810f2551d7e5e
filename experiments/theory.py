"""Section 3 of the paper: the chance that a random sparse vector matches a stored one.

Binary vectors (Figure 2). A stored vector x has s active bits out of n; a random vector y has a
active bits, each of the C(n, a) choices equally likely. They match when the overlap x.y >= theta.
The random vectors with overlap exactly b form the set Omega(b):

    |Omega(b)| = C(s, b) C(n - s, a - b)          (b of x's bits, a - b of the n - s others)
    P(match)   = sum_{b = theta..s} |Omega(b)| / C(n, a)      (a hypergeometric upper tail)

evaluated in log space (log C from lgamma, then logsumexp), so it never overflows and is
accurate to about 1e-10 relative for any n (tested against exact integers up to n = 10,000).

Scalar vectors (Figure 3). A weight vector w has k_w non-zeros U_j / k_w, U ~ U(-1, 1), an input
x has a non-zeros 2 S V_j / k_w, V ~ U(0, 1) (S = scale), and they match when
w.x >= theta = E[w.w] / 2 = k_w E[U^2] / (2 k_w^2) = 1 / (6 k_w). With b ~ Hypergeometric(n, k_w,
a) shared positions, w.x = (2 S / k_w^2) sum_{j <= b} U_j V_j, so

    P(match) = sum_b P(b) P(U_1 V_1 + ... + U_b V_b >= t),      t = k_w / (12 S),

whose b-fold sums ``ScalarSumTails`` computes on a fine grid. The paper's runs include a = 256 at
n = 250; there the input is fully dense, i.e. a is clipped to n (which reproduces its value).

``python run.py configs/theory.yaml`` (``run_theory``) writes results/theory/: the figures as
PNG, the CSV behind every curve, the published-vs-ours tables, README.md with the captions,
config.yaml and provenance.json.
"""

import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from scipy.signal import fftconvolve
from scipy.special import gammaln, logsumexp

from experiments import theory_sim as sim
from experiments.config import from_dict, parse_override, read_yaml, set_key, to_dict
from experiments.plots import new_figure, save_png
from experiments.records import atomic_write, markdown_table, write_table, write_yaml

PAPER_QUARTER = 0.25  # the curve the paper draws and labels "a = n/2" is computed with a = n/4
FIG3_LEFT_N = (250, 500, 1000, 1500, 2000, 2500)
FIG3_RIGHT_S = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
PUBLISHED_FIGURE2 = {  # curve (a, or a / n) -> {n: the paper's theory value}
    64: {300: 1.09461662e-3, 500: 5.69571109e-6, 700: 1.41253231e-7},
    128: {300: 0.292078214, 500: 7.36788303e-3, 900: 2.50255520e-5},
    256: {300: 0.999997973, 1100: 3.50549722e-3, 3500: 2.23380881e-8},
    PAPER_QUARTER: {300: 5.186e-3, 3500: 7.017e-3},
}
PUBLISHED_FIGURE3_LEFT = {  # curve -> {n: the paper's simulated frequency}, S = 1
    64: dict(zip(FIG3_LEFT_N, (3.65e-3, 3.06e-4, 1.89e-5, 4.17e-6, 1.50e-6, 9.17e-7))),
    128: dict(zip(FIG3_LEFT_N, (2.45e-2, 3.64e-3, 3.16e-4, 6.93e-5, 2.17e-5, 8.67e-6))),
    256: dict(zip(FIG3_LEFT_N, (7.62e-2, 2.42e-2, 3.76e-3, 9.78e-4, 3.33e-4, 1.42e-4))),
    0.5: dict.fromkeys(FIG3_LEFT_N, 2.3e-2),  # the paper states "about 2.3e-2", flat
}
PUBLISHED_FIGURE3_RIGHT = {  # curve -> {S: the paper's simulated frequency}, n = 1000
    64: dict(zip(FIG3_RIGHT_S, (1.94e-5, 1.15e-3, 7.21e-3, 1.92e-2, 3.61e-2, 5.70e-2, 7.89e-2))),
    128: dict(zip(FIG3_RIGHT_S, (3.13e-4, 7.08e-3, 2.72e-2, 5.72e-2, 8.95e-2, 1.21e-1, 1.51e-1))),
    256: dict(zip(FIG3_RIGHT_S, (3.98e-3, 3.31e-2, 8.05e-2, 1.29e-1, 1.71e-1, 2.07e-1, 2.35e-1))),
}
QUARTER_NOTE = ("The a = n/4 rows are the curve the paper draws and labels 'a = n/2' "
                "(published to 4 significant digits).")
SMOKE_OVERRIDES = {"binary.trials": 2000, "binary.importance_trials": 500, "scalar.trials": 2,
                   "heatmap.points": 40}


# ---------------------------------------------------------------- config

@dataclass
class BinaryConfig:
    """Figure 2: s stored bits, threshold theta, the curves (a fixed, or a = int(f n)), trials."""
    stored_active: int = 24  # s
    threshold: int = 12  # theta
    a_values: list[int] = field(default_factory=lambda: [64, 128, 256])
    a_fractions: list[float] = field(default_factory=lambda: [0.5])
    n_values: list[int] = field(default_factory=lambda: list(range(300, 3501, 200)))
    line_step: int = 25  # n spacing of the theory lines
    trials: int = 1_000_000  # plain Monte-Carlo trials per point
    importance_trials: int = 100_000  # importance-sampling paths per point

    def check(self):
        if not 0 < self.threshold <= self.stored_active:
            raise ValueError(f"threshold: must be in 1..stored_active ({self.stored_active}), "
                             f"got {self.threshold}")
        _check_curves(self.a_values, self.a_fractions, self.n_values, self.stored_active)
        _check_positive(self, "line_step", "trials", "importance_trials")


@dataclass
class ScalarLeftConfig:
    """Figure 3 left: P(match) vs n at one input scale S (a > n is clipped to n)."""
    n_values: list[int] = field(default_factory=lambda: list(FIG3_LEFT_N))
    a_values: list[int] = field(default_factory=lambda: [64, 128, 256])
    a_fractions: list[float] = field(default_factory=lambda: [0.5])
    scale: float = 1.0
    line_step: int = 25

    def check(self):
        _check_curves([], self.a_fractions, self.n_values, 1)
        _check_positive(self, "scale", "line_step")


@dataclass
class ScalarRightConfig:
    """Figure 3 right: P(match) vs input scale S at one n."""
    n: int = 1000
    scales: list[float] = field(default_factory=lambda: list(FIG3_RIGHT_S))
    a_values: list[int] = field(default_factory=lambda: [64, 128, 256])
    line_step: float = 0.05

    def check(self):
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales: must be a non-empty list of positive numbers, "
                             f"got {self.scales}")
        _check_positive(self, "n", "line_step")


@dataclass
class ScalarConfig:
    """Figure 3: k_w weight non-zeros; trials x weights x inputs independent pairs per point."""
    weight_nonzeros: int = 32  # k_w
    trials: int = 3000
    weights_per_trial: int = 4
    inputs_per_trial: int = 1000
    cells_per_unit: int = 1000  # grid of the numerical theory; 4x finer changes it < 1e-5
    left: ScalarLeftConfig = field(default_factory=ScalarLeftConfig)
    right: ScalarRightConfig = field(default_factory=ScalarRightConfig)

    def check(self):
        _check_positive(self, "weight_nonzeros", "trials", "weights_per_trial",
                        "inputs_per_trial", "cells_per_unit")
        if self.weight_nonzeros > min(self.left.n_values + [self.right.n]):
            raise ValueError(f"weight_nonzeros: {self.weight_nonzeros} exceeds the smallest n")

    @property
    def pairs(self):
        return self.trials * self.weights_per_trial * self.inputs_per_trial


@dataclass
class HeatmapConfig:
    """The extra figure: log P(match) over (n, a), log-spaced axes up to n_max."""
    n_min: int = 100
    n_max: int = 10_000
    points: int = 160  # grid points per axis

    def check(self):
        _check_positive(self, "n_min", "points")
        if self.n_max <= self.n_min:
            raise ValueError(f"n_max: must exceed n_min ({self.n_min}), got {self.n_max}")


@dataclass
class TheoryConfig:
    """configs/theory.yaml: the seed, the interval level and each figure's settings."""
    task: str = "theory"
    seed: int = 0
    ci_level: float = 0.95  # of every confidence interval drawn and written
    binary: BinaryConfig = field(default_factory=BinaryConfig)
    scalar: ScalarConfig = field(default_factory=ScalarConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)

    def check(self):
        if self.task != "theory":
            raise ValueError(f"task: must be 'theory', got {self.task!r}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level: must be in (0, 1), got {self.ci_level}")
        if self.heatmap.n_max < 2 * self.binary.stored_active:
            raise ValueError("heatmap.n_max: must be at least 2 * binary.stored_active")


def _check_positive(cfg, *names):
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name}: must be positive, got {getattr(cfg, name)}")


def _check_curves(a_values, a_fractions, n_values, s):
    if not n_values or min(n_values) < s:
        raise ValueError(f"n_values: must be a non-empty list of values >= {s}, got {n_values}")
    if any(not 0 < f <= 1 for f in a_fractions):
        raise ValueError(f"a_fractions: must lie in (0, 1], got {a_fractions}")
    if any(not 0 < a <= min(n_values) for a in a_values):
        raise ValueError(f"a_values: must lie in 1..min(n_values) = {min(n_values)}, "
                         f"got {a_values}")


def load_theory_config(path, overrides=(), smoke=False):
    """The validated TheoryConfig of ``path`` (+ smoke trial counts, then ``--set`` overrides)."""
    raw = read_yaml(path)
    for key, value in (SMOKE_OVERRIDES.items() if smoke else ()):
        set_key(raw, key.split("."), value)
    for text in overrides:
        set_key(raw, *parse_override(text))
    return from_dict(TheoryConfig, raw, f"{path}: ")


# ---------------------------------------------------------------- exact binary theory

def log_comb(n, k):
    """log C(n, k) elementwise; -inf where k < 0 or k > n."""
    n, k = np.asarray(n, float), np.asarray(k, float)
    ok = (k >= 0) & (k <= n)
    k, rest = np.where(ok, k, 0.0), np.where(ok, n - k, 0.0)
    return np.where(ok, gammaln(n + 1) - gammaln(k + 1) - gammaln(rest + 1), -np.inf)


def log_overlap_set_size(n, a, s, b):
    """log |Omega(b)| = log C(s, b) + log C(n - s, a - b): random a-of-n vectors with overlap
    exactly b with a fixed s-of-n vector. Broadcasts over all arguments."""
    return log_comb(s, b) + log_comb(np.asarray(n) - s, np.asarray(a) - np.asarray(b))


def overlap_pmf(n, a, s):
    """P(overlap = b) = |Omega(b)| / C(n, a) for b = 0..s (Hypergeometric(n, s, a)). # (s + 1,)"""
    b = np.arange(s + 1)
    return np.exp(log_overlap_set_size(n, a, s, b) - log_comb(n, a))


def log_match_probability(n, a, s, theta):
    """log P(overlap >= theta) = logsumexp_{b = theta..s} log |Omega(b)| - log C(n, a).
    Broadcasts over n and a (a <= n); -inf when a < theta."""
    n, a = np.asarray(n)[..., None], np.asarray(a)[..., None]
    b = np.arange(theta, s + 1)
    with np.errstate(divide="ignore"):
        return logsumexp(log_overlap_set_size(n, a, s, b), axis=-1) - log_comb(n, a)[..., 0]


def match_probability(n, a, s, theta):
    """P(match) of a random a-of-n binary vector against a stored s-of-n one (Figure 2)."""
    return np.exp(log_match_probability(n, a, s, theta))


# ---------------------------------------------------------------- numerical scalar theory

def product_cdf(z):
    """P(U V <= z) for U ~ U(-1, 1), V ~ U(0, 1): 1/2 + sign(z) (|z| - |z| ln|z|) / 2 on [-1, 1]
    (U V has density -ln|z| / 2)."""
    az = np.abs(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(az > 0, az - az * np.log(az), 0.0) / 2.0
    return 0.5 + np.sign(z) * half


class ScalarSumTails:
    """P(U_1 V_1 + ... + U_b V_b >= t) for b = 0..b_max, U ~ U(-1, 1), V ~ U(0, 1).

    U V's exact mass on each grid cell of width h = 1 / cells_per_unit sits at the cell centre;
    the b-fold sums are repeated convolutions (FFT). Each lattice mass of the sum is spread over
    its cell, i.e. the CDF is linearly interpolated between cell edges: error O(h^2).
    """

    def __init__(self, b_max, cells_per_unit):
        self.cells, self.h = cells_per_unit, 1.0 / cells_per_unit
        masses = np.diff(product_cdf(np.arange(-self.cells, self.cells + 1) * self.h))
        dist, self.cdfs = np.ones(1), [np.ones(1)]
        for _ in range(b_max):
            dist = np.clip(fftconvolve(dist, masses), 0.0, None)
            self.cdfs.append(np.cumsum(dist))

    def tail(self, b, t):
        """P(sum of b products >= t)."""
        cdf = self.cdfs[b]
        upper_edges = (np.arange(len(cdf)) - b * self.cells + (b + 1) / 2) * self.h
        return 1.0 - float(np.interp(t, upper_edges, cdf, left=0.0, right=1.0))


def scalar_threshold(k_w, scale):
    """t with w.x >= 1 / (6 k_w)  <=>  sum_j U_j V_j >= t = k_w / (12 S)."""
    return k_w / (12.0 * scale)


def scalar_match_probability(n, a, k_w, scale, tails):
    """P(w.x >= theta) = sum_b P(b) P(sum_{j <= b} U_j V_j >= k_w / (12 S)), a clipped to n."""
    pmf = overlap_pmf(n, min(a, n), k_w)
    t = scalar_threshold(k_w, scale)
    return sum(pmf[b] * tails.tail(b, t) for b in range(k_w + 1) if pmf[b] > 0)


# ---------------------------------------------------------------- curves

def curve_a(curve, n):
    """Active count of a random vector at n: the curve's a (int), or int(f n) for a fraction f."""
    return int(curve * n) if isinstance(curve, float) else curve


def curve_label(curve):
    """'a = 64', 'a = n/2', 'a = 3n/4'."""
    if not isinstance(curve, float):
        return f"a = {curve}"
    f = Fraction(curve).limit_denominator(1000)
    numerator = "" if f.numerator == 1 else f.numerator
    return f"a = {numerator}n" + ("" if f.denominator == 1 else f"/{f.denominator}")


def grid(points, step):
    """A regular grid from min(points) to max(points) that also contains every point."""
    return np.union1d(np.arange(min(points), max(points) + step / 2, step), points)


# ---------------------------------------------------------------- Figure 2 (binary)

def binary_theory(cfg):
    """Exact P(match) along n for every curve and the paper's a = n/4 curve. # curve, n, a, p"""
    ns = grid(cfg.n_values, cfg.line_step).astype(int)
    frames = []
    for curve in [*cfg.a_values, *cfg.a_fractions, PAPER_QUARTER]:
        a = np.array([curve_a(curve, n) for n in ns])
        p = match_probability(ns, a, cfg.stored_active, cfg.threshold)
        frames.append(pd.DataFrame({"curve": curve_label(curve), "n": ns, "a": a, "p": p}))
    return pd.concat(frames, ignore_index=True)


def binary_simulation(cfg, rng, level):
    """Per point: frequency (Clopper-Pearson CI), importance-sampling estimate (its CI)."""
    rows = []
    for curve in [*cfg.a_values, *cfg.a_fractions]:
        for n in cfg.n_values:
            a = curve_a(curve, n)
            args = (n, a, cfg.stored_active, cfg.threshold)
            estimate = sim.binary_importance(*args, cfg.importance_trials, rng, level)
            rows.append({"curve": curve_label(curve), "n": n, "a": a, "trials": cfg.trials,
                         "matches": sim.binary_matches(*args, cfg.trials, rng),
                         "is_trials": cfg.importance_trials,
                         **dict(zip(("is_estimate", "is_ci_low", "is_ci_high"), estimate)),
                         "theory": float(match_probability(*args))})
    return _with_frequency(pd.DataFrame(rows), level)


def _with_frequency(frame, level):
    frame["frequency"] = frame.matches / frame.trials
    frame["ci_low"], frame["ci_high"] = sim.clopper_pearson(frame.matches, frame.trials, level)
    return frame


def binary_published(cfg):
    """The paper's Figure 2 theory values beside our exact ones. # curve, n, a, published, ..."""
    rows = []
    for curve, values in PUBLISHED_FIGURE2.items():
        for n, published in values.items():
            a = curve_a(curve, n)
            ours = float(match_probability(n, a, cfg.stored_active, cfg.threshold))
            rows.append({"curve": curve_label(curve), "n": n, "a": a, "published": published,
                         "ours": ours, "rel_error": ours / published - 1})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Figure 3 (scalar)

def scalar_points(cfg, left_n, right_scales):
    """(panel, curve, n, a, scale) at ``left_n`` (left panel) and ``right_scales`` (right)."""
    left, right = cfg.left, cfg.right
    points = [("left", c, int(n), curve_a(c, int(n)), left.scale)
              for c in [*left.a_values, *left.a_fractions] for n in left_n]
    return points + [("right", a, right.n, a, float(s))
                     for a in right.a_values for s in right_scales]


def scalar_theory(cfg, tails):
    """Numerical P(match) along n (left) and along S (right). # panel, curve, n, a, scale, p"""
    points = scalar_points(cfg, grid(cfg.left.n_values, cfg.left.line_step),
                           grid(cfg.right.scales, cfg.right.line_step))
    return _scalar_frame(points, [scalar_match_probability(n, a, cfg.weight_nonzeros, s, tails)
                                  for _, _, n, a, s in points], "p")


def scalar_simulation(cfg, tails, rng, level):
    """Frequency of matches among cfg.pairs independent pairs per point, its CI, the theory."""
    points = scalar_points(cfg, cfg.left.n_values, cfg.right.scales)
    k_w = cfg.weight_nonzeros
    pmfs = [overlap_pmf(n, min(a, n), k_w) for _, _, n, a, _ in points]
    thresholds = [scalar_threshold(k_w, s) for *_, s in points]
    frame = _scalar_frame(points, sim.scalar_matches(pmfs, thresholds, cfg.pairs, rng), "matches")
    frame["trials"] = cfg.pairs
    frame["theory"] = [scalar_match_probability(n, a, k_w, s, tails) for _, _, n, a, s in points]
    return _with_frequency(frame, level)


def scalar_published(cfg, tails, simulation):
    """The paper's Figure 3 frequencies beside our numerical theory and our simulation."""
    rows = []
    for panel, table in (("left", PUBLISHED_FIGURE3_LEFT), ("right", PUBLISHED_FIGURE3_RIGHT)):
        for curve, values in table.items():
            for x, published in values.items():
                rows.append(_scalar_published_row(cfg, tails, panel, curve, x, published))
    frame = pd.DataFrame(rows)
    keys = ["panel", "curve", "n", "scale"]
    frame = frame.merge(simulation[keys + ["frequency"]], on=keys, how="left")
    frame["sim_rel_diff"] = frame.frequency / frame.published - 1
    return frame


def _scalar_published_row(cfg, tails, panel, curve, x, published):
    n, scale = (x, cfg.left.scale) if panel == "left" else (cfg.right.n, x)
    a = curve_a(curve, n)
    ours = scalar_match_probability(n, a, cfg.weight_nonzeros, scale, tails)
    return {"panel": panel, "curve": curve_label(curve), "n": n, "a": min(a, n), "scale": scale,
            "published": published, "theory": ours, "theory_rel_diff": ours / published - 1}


def _scalar_frame(points, values, column):
    labelled = [(panel, curve_label(c), n, min(a, n), s) for panel, c, n, a, s in points]
    frame = pd.DataFrame(labelled, columns=["panel", "curve", "n", "a", "scale"])
    frame[column] = values
    return frame


# ---------------------------------------------------------------- extra: heat map over (n, a)

def heatmap_table(cfg, binary):
    """log10 P(match) on a log-spaced (n, a) grid with a <= n. # n, a, log10_p"""
    n_grid = np.unique(np.geomspace(cfg.n_min, cfg.n_max, cfg.points).round().astype(int))
    a_grid = np.unique(np.geomspace(binary.threshold, cfg.n_max, cfg.points).round().astype(int))
    n, a = (m.ravel() for m in np.meshgrid(n_grid, a_grid))
    keep = (a <= n) & (n >= binary.stored_active)
    logp = log_match_probability(n[keep], a[keep], binary.stored_active, binary.threshold)
    return pd.DataFrame({"n": n[keep], "a": a[keep], "log10_p": logp / np.log(10)})


# ---------------------------------------------------------------- compute everything

def compute_all(cfg, timings):
    """Every table behind the figures, {name: DataFrame}; step wall times go to ``timings``."""
    binary, scalar = cfg.binary, cfg.scalar
    rng_binary, rng_scalar = (np.random.default_rng([cfg.seed, part]) for part in (2, 3))
    tails = _timed(timings, "scalar_grid", ScalarSumTails, scalar.weight_nonzeros,
                   scalar.cells_per_unit)
    frames = {"figure2_theory": _timed(timings, "figure2_theory", binary_theory, binary),
              "figure2_simulation": _timed(timings, "figure2_simulation", binary_simulation,
                                           binary, rng_binary, cfg.ci_level),
              "figure2_published": binary_published(binary),
              "figure3_theory": _timed(timings, "figure3_theory", scalar_theory, scalar, tails),
              "figure3_simulation": _timed(timings, "figure3_simulation", scalar_simulation,
                                           scalar, tails, rng_scalar, cfg.ci_level),
              "extra_heatmap": _timed(timings, "extra_heatmap", heatmap_table, cfg.heatmap,
                                      binary)}
    frames["figure3_published"] = scalar_published(scalar, tails, frames["figure3_simulation"])
    return frames


def _timed(timings, name, fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    timings[name] = round(time.perf_counter() - start, 2)
    return value


# ---------------------------------------------------------------- figures

PUBLISHED_MARKER = {"marker": "x", "color": "red", "markersize": 8, "markeredgewidth": 1.6,
                    "linestyle": "none"}
FREQUENCY_MARKER = {"marker": "o", "color": "black", "markersize": 3.5, "linestyle": "none"}
IMPORTANCE_MARKER = {"marker": "D", "color": "black", "markerfacecolor": "none",
                     "markersize": 6, "linestyle": "none"}


def curve_styles(labels):
    """Line style and legend text per curve: a colour each in order, the paper's a = n/4
    curve grey and dashed."""
    quarter = curve_label(PAPER_QUARTER)
    styles = {label: {"color": f"C{i}", "label": label} for i, label in enumerate(labels)}
    if quarter in styles:
        styles[quarter] = {"color": "0.45", "linestyle": "--",
                           "label": f"{quarter} (the paper's 'a = n/2' curve)"}
    return styles


def draw_panel(ax, x, theory, simulation, published, styles):
    """Theory lines, simulated frequencies with their CIs (where any match was seen), and the
    paper's values, on a log-y axis."""
    for curve, line in theory.groupby("curve", sort=False):
        ax.plot(line[x], line.p, linewidth=1.6, **styles[curve])
    seen = simulation[simulation.matches > 0]
    ax.errorbar(seen[x], seen.frequency, yerr=_error_bars(seen.frequency, seen.ci_low,
                                                          seen.ci_high),
                elinewidth=1, capsize=2, zorder=4, **FREQUENCY_MARKER)
    ax.plot(published[x], published.published, zorder=3, **PUBLISHED_MARKER)
    ax.set_yscale("log")
    ax.set_ylabel("P(match)")
    ax.grid(alpha=0.3)


def _error_bars(value, low, high):
    """[below, above] for errorbar, the lower bar kept above zero on a log axis."""
    return [np.minimum(value - low, 0.999 * value), high - value]


def legend_handles(styles, markers):
    """Line handles for the curves, then marker handles for the kinds of points."""
    return ([Line2D([], [], linewidth=1.6, **style) for style in styles.values()]
            + [Line2D([], [], label=text, **style) for style, text in markers])


def figure2(cfg, level, theory, simulation, published):
    """Figure 2: P(match) vs n for binary vectors (log y)."""
    fig = new_figure(8.0, 6.0)
    ax = fig.subplots()
    styles = curve_styles(list(dict.fromkeys(theory.curve)))
    draw_panel(ax, "n", theory, simulation, published, styles)
    ax.errorbar(simulation.n, simulation.is_estimate, zorder=3, elinewidth=0.8,
                yerr=_error_bars(simulation.is_estimate, simulation.is_ci_low,
                                 simulation.is_ci_high), **IMPORTANCE_MARKER)
    ax.legend(handles=legend_handles(styles, [
        (FREQUENCY_MARKER, f"simulation: frequency of {cfg.trials:,} trials ({level:.0%} CI)"),
        (IMPORTANCE_MARKER, f"simulation: importance sampling, {cfg.importance_trials:,} paths"),
        (PUBLISHED_MARKER, "published (paper)")]), fontsize="small", loc="lower left")
    ax.set(xlabel="n (vector dimension)", ylim=(max(theory.p.min() / 10, 1e-300), 3.0),
           title=f"Binary vectors: P(overlap >= {cfg.threshold}) with a stored vector of "
                 f"{cfg.stored_active} active bits")
    return fig


def figure3(cfg, theory, simulation, published):
    """Figure 3: scalar vectors, P(match) vs n (left) and vs the input scale S (right)."""
    fig = new_figure(13.0, 5.5)
    axes = fig.subplots(1, 2)
    for ax, panel, x in zip(axes, ("left", "right"), ("n", "scale")):
        part = {name: frame[frame.panel == panel]
                for name, frame in (("t", theory), ("s", simulation), ("p", published))}
        styles = curve_styles(list(dict.fromkeys(part["t"].curve)))
        draw_panel(ax, x, part["t"], part["s"], part["p"], styles)
        ax.legend(handles=legend_handles(styles, [
            (FREQUENCY_MARKER, f"simulation: frequency of {cfg.pairs:,} pairs"),
            (PUBLISHED_MARKER, "published (paper)")]), fontsize="small",
                  loc="lower left" if panel == "left" else "lower right")
    axes[0].set(xlabel="n (vector dimension)",
                title=f"input scale S = {cfg.left.scale:g}, k_w = {cfg.weight_nonzeros}")
    axes[1].set(xlabel="S (input scale: input values ~ U(0, 2S/k_w))",
                title=f"n = {cfg.right.n}, k_w = {cfg.weight_nonzeros}")
    fig.suptitle("Scalar vectors: P(w.x >= E[w.w]/2); lines = numerical theory")
    return fig


def heatmap_figure(heatmap, binary):
    """log10 P(match) over (n, a), with the a = n/2 and a = n/4 diagonals and Figure 2's rows."""
    table = heatmap.pivot(index="a", columns="n", values="log10_p")
    ns, a_grid, z = table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy()
    fig = new_figure(8.0, 6.0)
    ax = fig.subplots()
    mesh = ax.pcolormesh(ns, a_grid, z, shading="nearest", cmap="viridis",
                         norm=Normalize(np.nanmin(z), 0))
    fig.colorbar(mesh, ax=ax, label="log10 P(match)")
    contours = ax.contour(ns, a_grid, z, levels=[-16, -8, -4, -2], colors="white",
                          linewidths=0.8, linestyles="solid")
    ax.clabel(contours, fmt=lambda v: f"1e{v:.0f}", fontsize="small")
    ax.plot(ns, ns / 2, color="orange", linewidth=2, label="a = n/2 (P -> 0.58, never small)")
    ax.plot(ns, ns / 4, color="orange", linestyle="--",
            label="a = n/4 (the paper's 'a = n/2' curve)")
    ax.hlines(binary.a_values, min(binary.n_values), max(binary.n_values), colors="red",
              linewidth=1.5, label=f"a = {', '.join(map(str, binary.a_values))} over "
                                   f"Figure 2's n range")
    ax.set(xscale="log", yscale="log", xlabel="n (vector dimension)",
           ylabel="a (active bits of the random vector)", xlim=(ns.min(), ns.max()),
           title=f"P(match), s = {binary.stored_active}, theta = {binary.threshold} "
                 f"(white: a > n)")
    ax.legend(fontsize="small", loc="upper left")
    return fig


# ---------------------------------------------------------------- captions, README, files

def figure2_caption(cfg, level):
    return (
        f"**Figure 2.** Probability that a random binary vector with a active bits out of n "
        f"matches a stored vector with s = {cfg.stored_active} active bits (overlap >= "
        f"theta = {cfg.threshold}). Lines: the exact hypergeometric tail. Black dots: plain "
        f"Monte-Carlo frequency of {cfg.trials:,} random vectors per point with its {level:.0%} "
        f"Clopper-Pearson interval (points without a single match are left out; see the CSV). "
        f"Open diamonds: importance-sampling estimates ({cfg.importance_trials:,} tilted paths "
        f"per point, {level:.0%} normal interval), which reach probabilities a frequency "
        f"cannot. Red crosses: the paper's published values. The paper's curve labelled "
        f"'a = n/2' was computed with a = n/4 (grey dashed; its published values lie on it): "
        f"the true a = n/2 stays at about 0.58 for every n, i.e. dense vectors never become "
        f"distinguishable.")


def figure3_caption(cfg, level):
    return (
        f"**Figure 3.** Scalar vectors: a weight vector with k_w = {cfg.weight_nonzeros} "
        f"non-zeros ~ U(-1/k_w, 1/k_w) matches an input with a non-zeros ~ U(0, 2S/k_w) when "
        f"w.x >= E[w.w]/2 = 1/(6 k_w). Left: vs n at S = {cfg.left.scale:g}; right: vs S at "
        f"n = {cfg.right.n}. Lines: numerical theory (hypergeometric overlap times the exact "
        f"law of a sum of products of uniforms, on a grid). Black dots: frequency among "
        f"{cfg.pairs:,} independent (weight, input) pairs per point (the paper's {cfg.trials:,} "
        f"trials x {cfg.weights_per_trial} weights x {cfg.inputs_per_trial:,} inputs), "
        f"{level:.0%} Clopper-Pearson interval. Red crosses: the paper's values (its a = n/2 "
        f"curve is only stated as 'about 2.3e-2, flat'). The paper's a = 256 at n = 250 has "
        f"more active inputs than dimensions; clipping a to n (a dense input) reproduces it.")


def heatmap_caption(binary):
    return (
        f"**Extra: P(match) over (n, a).** The exact probability on a log-log grid up to "
        f"n = 10,000 (s = {binary.stored_active}, theta = {binary.threshold}). For a fixed "
        f"a the false-match probability falls roughly like (a/n)^{binary.threshold}, but along "
        f"any line a = c n it converges to a constant (the binomial tail "
        f"P(Bin({binary.stored_active}, c) >= {binary.threshold}), 0.58 for c = 1/2): only "
        f"sparse vectors, a << n, make chance matches rare, and more dimensions help only when "
        f"the activity does not grow with them.")


def agreement(frames):
    """One line per check: how the simulations and our theory compare with each other and
    with the paper."""
    f2, f2p = frames["figure2_simulation"], frames["figure2_published"]
    f3, f3p = frames["figure3_simulation"], frames["figure3_published"]
    big = f2[f2.theory > 1e-4]
    seen = f2[f2.matches >= 10]
    above = f3p[f3p.published > 1e-4]
    quarter = f2p.curve == curve_label(PAPER_QUARTER)
    return [
        f"- Figure 2, exact vs published: largest relative error "
        f"{_max_abs(f2p.rel_error[~quarter]):.1e} over the paper's 9-digit values, "
        f"{_max_abs(f2p.rel_error[quarter]):.1e} on its 4-digit a = n/4 values.",
        f"- Figure 2, frequency: theory inside the interval at {_inside(big, 'ci')} points "
        f"with P > 1e-4; smallest probability resolved with >= 10 matches: "
        f"{seen.theory.min():.2g}; {int((f2.matches == 0).sum())} points saw no match.",
        f"- Figure 2, importance sampling: theory inside the interval at {_inside(f2, 'is_ci')} "
        f"points, down to P = {f2.theory.min():.2g}; the largest interval half-width is "
        f"{_max_abs((f2.is_ci_high - f2.is_estimate) / f2.is_estimate):.1%} of the estimate.",
        f"- Figure 3, simulation vs numerical theory: theory inside the interval at "
        f"{_inside(f3, 'ci')} points.",
        f"- Figure 3 vs published (published > 1e-4): simulation within "
        f"{_max_abs(above.sim_rel_diff):.1%}, numerical theory within "
        f"{_max_abs(above.theory_rel_diff):.1%} relative."]


def _inside(frame, prefix):
    ok = (frame[f"{prefix}_low"] <= frame.theory) & (frame.theory <= frame[f"{prefix}_high"])
    return f"{int(ok.sum())} of {len(frame)}"


def _max_abs(values):
    return float(np.abs(values).max())


def formatted(frame, formats):
    """A copy with the given columns as strings, e.g. {'ours': '.9g'}, for .md and .csv."""
    out = frame.copy()
    for column, spec in formats.items():
        out[column] = [format(v, spec) for v in frame[column]]
    return out


def readme_text(cfg, frames, wall_s, timings):
    sections = [
        "# Section 3 theory: Figures 2 and 3, and P(match) over (n, a)", "",
        f"Regenerate with `python run.py configs/theory.yaml` ({wall_s:.0f} s wall time here; "
        f"per step: {', '.join(f'{k} {v:g} s' for k, v in timings.items())}). Seed "
        f"{cfg.seed}; resolved settings in config.yaml, machine and versions in "
        f"provenance.json.", "",
        "![Figure 2](figure2_binary.png)", "", figure2_caption(cfg.binary, cfg.ci_level), "",
        "![Figure 3](figure3_scalar.png)", "", figure3_caption(cfg.scalar, cfg.ci_level), "",
        "![P(match) over (n, a)](extra_heatmap.png)", "", heatmap_caption(cfg.binary), "",
        "## Checks", "", f"With {cfg.ci_level:.0%} intervals about {1 - cfg.ci_level:.0%} "
        f"of the points should miss the theory by chance.", "", *agreement(frames), "",
        "## Published vs ours", "", "Figure 2 (theory values):", "",
        markdown_table(figure2_table(frames)), "", QUARTER_NOTE, "",
        "Figure 3 (simulated frequencies):", "",
        markdown_table(figure3_table(frames)), "",
        "Data: figure2_*.csv, figure3_*.csv and extra_heatmap.csv hold every curve and point."]
    return "\n".join(sections) + "\n"


def figure2_table(frames):
    return formatted(frames["figure2_published"],
                     {"published": ".9g", "ours": ".9g", "rel_error": "+.1e"})


def figure3_table(frames):
    return formatted(frames["figure3_published"],
                     {"published": ".3g", "theory": ".3g", "theory_rel_diff": "+.1%",
                      "frequency": ".3g", "sim_rel_diff": "+.1%"})


def write_all(cfg, frames, out, timings, start):
    """Write the CSVs, tables, figures, README, config and provenance under ``out``."""
    for name in ("figure2_theory", "figure2_simulation", "figure3_theory",
                 "figure3_simulation", "extra_heatmap"):
        atomic_write(out / f"{name}.csv", frames[name].to_csv(index=False))
    write_table(figure2_table(frames), out / "figure2_published",
                title="Figure 2: the paper's theory values vs our exact ones",
                notes=[QUARTER_NOTE])
    write_table(figure3_table(frames), out / "figure3_published",
                title="Figure 3: the paper's frequencies vs our theory and simulation")
    save_png(figure2(cfg.binary, cfg.ci_level, frames["figure2_theory"],
                     frames["figure2_simulation"], frames["figure2_published"]),
             out / "figure2_binary.png")
    save_png(figure3(cfg.scalar, frames["figure3_theory"], frames["figure3_simulation"],
                     frames["figure3_published"]), out / "figure3_scalar.png")
    save_png(heatmap_figure(frames["extra_heatmap"], cfg.binary), out / "extra_heatmap.png")
    wall_s = time.time() - start
    atomic_write(out / "README.md", readme_text(cfg, frames, wall_s, timings))
    write_yaml(out / "config.yaml", to_dict(cfg))
    provenance = {**_provenance(), "wall_time_s": round(wall_s, 1), "timings_s": timings}
    atomic_write(out / "provenance.json", json.dumps(provenance, indent=2, default=str) + "\n")
    return wall_s


def _provenance():
    import torch
    from experiments.records import provenance
    return provenance(torch.device("cpu"))


def run_theory(args):
    """``python run.py configs/theory.yaml``: compute, simulate, plot, write; return 0."""
    start = time.time()
    cfg = load_theory_config(args.config, args.overrides, args.smoke)
    out = Path(args.out) / "smoke" / "theory" if args.smoke else Path(args.out) / "theory"
    timings = {}
    frames = compute_all(cfg, timings)
    wall_s = write_all(cfg, frames, out, timings, start)
    print(f"theory: wrote {out} in {wall_s:.1f} s")
    print("\n".join(agreement(frames)))
    return 0
