"""Every curve and point of Figures 2 and 3 and the heat map, as DataFrames (no plotting, no files)."""

import time
from fractions import Fraction

import numpy as np
import pandas as pd

from experiments.core.intervals import clopper_pearson
from experiments.theory import sim
from experiments.theory.exact import (ScalarSumTails, log_match_probability,
                                      match_probability, overlap_pmf,
                                      scalar_match_probability, scalar_threshold)
from experiments.theory.published import (PAPER_QUARTER, PUBLISHED_FIGURE2,
                                          PUBLISHED_FIGURE3_LEFT, PUBLISHED_FIGURE3_RIGHT)

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
    frame["ci_low"], frame["ci_high"] = clopper_pearson(frame.matches, frame.trials, level)
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


