"""Section 3 theory: exact values against the paper and exact integers, simulations against the
theory (Bonferroni-corrected intervals, so one family of checks fails 5% of the time at most)."""

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.core.config import ConfigError
from experiments.core.intervals import clopper_pearson
from experiments.theory import config as tconfig
from experiments.theory import curves as tcurves
from experiments.theory import exact as texact
from experiments.theory import published as paper
from experiments.cli import load_experiment, run_experiment
from experiments.theory import sim, task

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "theory.yaml"
S, THETA, K_W = 24, 12, 32


def exact_match_probability(n, a, s=S, theta=THETA):
    """The reference: sum_b C(s, b) C(n - s, a - b) / C(n, a) in exact integers."""
    hits = sum(math.comb(s, b) * math.comb(n - s, a - b)
               for b in range(theta, s + 1) if 0 <= a - b <= n - s)
    return Fraction(hits, math.comb(n, a))


def figure2_points(cfg=tconfig.BinaryConfig()):
    return [(n, tcurves.curve_a(c, n)) for c in [*cfg.a_values, *cfg.a_fractions]
            for n in cfg.n_values]


def bonferroni(level, count):
    return 1 - (1 - level) / count


# ---------------------------------------------------------------- exact binary theory

def test_exact_values_reproduce_every_published_figure2_value():
    for curve, values in paper.PUBLISHED_FIGURE2.items():
        if curve == paper.PAPER_QUARTER:
            continue
        for n, published in values.items():
            ours = texact.match_probability(n, curve, S, THETA)
            assert abs(ours / published - 1) < 1e-6, (curve, n, ours, published)


def test_quarter_n_reproduces_the_papers_mislabelled_half_curve():
    for n, published in paper.PUBLISHED_FIGURE2[paper.PAPER_QUARTER].items():
        ours = texact.match_probability(n, n // 4, S, THETA)
        assert abs(ours / published - 1) < 1e-4  # published to 4 significant digits
    ns = np.arange(300, 3501, 200)
    half = texact.match_probability(ns, ns // 2, S, THETA)  # the true a = n/2: flat near 0.58
    limit = stats.binom.sf(THETA - 1, S, 0.5)
    assert np.all(np.abs(half - limit) < 4e-3) and abs(limit - 0.58) < 2e-3


@pytest.mark.parametrize("n,a", [(10_000, 5_000), (10_000, 16), (10_000, 12), (5_000, 300),
                                 (301, 300), (24, 24), (3_500, 64)])
def test_log_space_matches_exact_integers_up_to_n_10000(n, a):
    log_p = texact.log_match_probability(n, a, S, THETA)
    exact = exact_match_probability(n, a)
    assert np.isfinite(log_p)
    assert abs(log_p - (math.log(exact.numerator) - math.log(exact.denominator))) < 1e-9


def test_overlap_sets_partition_all_random_vectors():
    for n, a in [(30, 10), (300, 64), (10_000, 5_000)]:
        b = np.arange(S + 1)
        sizes = np.exp(texact.log_overlap_set_size(n, a, S, b) - texact.log_comb(n, a))
        assert abs(sizes.sum() - 1) < 1e-10  # Vandermonde: sum_b |Omega(b)| = C(n, a)
    b = np.arange(S + 1)
    exact = [math.comb(S, k) * math.comb(30 - S, 10 - k) if 0 <= 10 - k <= 30 - S else 0 for k in b]
    assert np.allclose(np.exp(texact.log_overlap_set_size(30, 10, S, b)), exact, rtol=1e-12)


def test_no_match_possible_below_threshold():
    assert texact.match_probability(1000, THETA - 1, S, THETA) == 0.0


def test_random_binary_vectors_have_hypergeometric_overlap():
    """Brute force, no formula: build random vectors and count overlaps."""
    rng = np.random.default_rng(5)
    n, a, vectors = 300, 128, 20_000
    stored = rng.choice(n, S, replace=False)
    active = np.argpartition(rng.random((vectors, n)), a, axis=1)[:, :a]  # (vectors, a)
    overlap = np.isin(active, stored).sum(axis=1)
    expected = texact.overlap_pmf(n, a, S) * vectors
    keep = expected >= 5
    observed = np.bincount(overlap, minlength=S + 1)
    chi2 = (((observed - expected)[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3
    lo, hi = clopper_pearson((overlap >= THETA).sum(), vectors, 0.999)
    assert lo <= texact.match_probability(n, a, S, THETA) <= hi


# ---------------------------------------------------------------- binary simulation

def test_frequency_agrees_with_theory_above_1e_4():
    rng = np.random.default_rng(1)
    points = [(n, a) for n, a in figure2_points()
              if texact.match_probability(n, a, S, THETA) > 1e-4]
    level = bonferroni(0.95, len(points))
    for n, a in points:
        matches = sim.binary_matches(n, a, S, THETA, 200_000, rng)
        lo, hi = clopper_pearson(matches, 200_000, level)
        assert lo <= texact.match_probability(n, a, S, THETA) <= hi, (n, a, matches)


def test_importance_sampling_agrees_with_theory_down_to_1e_15():
    rng = np.random.default_rng(2)
    points = figure2_points()
    level = bonferroni(0.95, len(points))
    for n, a in points:
        p = texact.match_probability(n, a, S, THETA)
        estimate, lo, hi = sim.binary_importance(n, a, S, THETA, 5_000, rng, level)
        assert lo <= p <= hi, (n, a, p, estimate)
        assert abs(estimate / p - 1) < 0.15
    assert texact.match_probability(3500, 64, S, THETA) < 1e-14


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(0, 1_000_000, 0.95)
    assert lo == 0 and abs(hi - (1 - 0.025 ** 1e-6)) < 1e-12  # hi = 1 - (alpha/2)^(1/N)
    lo, hi = clopper_pearson(10, 10, 0.95)
    assert hi == 1 and abs(lo - 0.025 ** 0.1) < 1e-12


# ---------------------------------------------------------------- scalar theory and simulation

@pytest.fixture(scope="module")
def tails():
    return texact.ScalarSumTails(K_W, 1000)


def test_product_law_is_exact_on_the_grid(tails):
    z = np.array([-1.0, -0.5, 0.0, 0.3, 1.0])
    assert np.allclose(texact.product_cdf(z)[[0, 2, 4]], [0.0, 0.5, 1.0])
    for t in (0.1, 0.5, 0.9):
        assert abs(tails.tail(1, t) - (1 - texact.product_cdf(t))) < 1e-6
    sums = sim.product_sums(3, 400_000, np.random.default_rng(3))
    assert abs(sums.var() - 3 / 9) < 0.01  # Var(U V) = E[U^2] E[V^2] = 1/3 * 1/3
    for t in (0.5, 1.5, 2.5):
        lo, hi = clopper_pearson((sums >= t).sum(), len(sums), 0.999)
        assert lo <= tails.tail(3, t) <= hi
    assert tails.tail(3, 3.0) == 0.0


def test_scalar_grid_has_converged(tails):
    coarse = texact.ScalarSumTails(K_W, 500)
    for n, a in [(250, 64), (2500, 64), (1000, 256), (250, 250)]:
        fine_p = texact.scalar_match_probability(n, a, K_W, 1.0, tails)
        coarse_p = texact.scalar_match_probability(n, a, K_W, 1.0, coarse)
        assert abs(coarse_p / fine_p - 1) < 1e-4


def test_scalar_theory_matches_published_within_20_percent(tails):
    """Below 1e-4 the paper's frequencies rest on few matches (9.17e-7 is about 11 of 12M)."""
    frame = published_scalar(tails, simulation=None)
    above = frame[frame.published > 1e-4]
    assert len(frame) == 45 and len(above) >= 35
    assert (above.theory_rel_diff.abs() < 0.2).all()


def test_input_denser_than_n_is_clipped(tails):
    clipped = texact.scalar_match_probability(250, 256, K_W, 1.0, tails)
    assert clipped == texact.scalar_match_probability(250, 250, K_W, 1.0, tails)
    assert abs(clipped / paper.PUBLISHED_FIGURE3_LEFT[256][250] - 1) < 0.05


def test_scalar_simulation_agrees_with_theory_and_published(tails):
    cfg = tconfig.ScalarConfig(trials=500)  # 2M pairs per point, a sixth of the paper's
    frame = tcurves.scalar_simulation(cfg, tails, np.random.default_rng(4), 0.95)
    lo, hi = clopper_pearson(frame.matches, frame.trials, bonferroni(0.95, len(frame)))
    assert ((lo <= frame.theory) & (frame.theory <= hi)).all()
    check_published(published_scalar(tails, frame))


@pytest.mark.slow
def test_scalar_simulation_at_the_papers_trial_count_matches_published(tails):
    cfg = tconfig.ScalarConfig()
    frame = tcurves.scalar_simulation(cfg, tails, np.random.default_rng(6), 0.95)
    check_published(published_scalar(tails, frame))


def published_scalar(tails, simulation):
    cfg = tconfig.ScalarConfig()
    keys = ["panel", "curve", "n", "scale"]
    if simulation is None:
        simulation = pd.DataFrame(columns=keys + ["frequency"])
    return tcurves.scalar_published(cfg, tails, simulation)


def check_published(frame):
    above = frame[frame.published > 1e-4]
    assert len(above) >= 35
    assert (above.sim_rel_diff.abs() < 0.2).all(), above[above.sim_rel_diff.abs() >= 0.2]


# ---------------------------------------------------------------- config and the run

def write_config(tmp_path, text):
    path = tmp_path / "theory.yaml"
    path.write_text("task: theory\n" + text)
    return path


@pytest.mark.parametrize("text,message", [
    ("binary: {trails: 5}\n", "binary.trails: unknown key"),
    ("binary: {threshold: 25}\n", "binary.threshold: must be in 1..stored_active"),
    ("binary: {a_values: [64, 400]}\n", "binary.a_values"),
    ("scalar: {left: {a_fractions: [1.5]}}\n", "scalar.left.a_fractions"),
    ("ci_level: 1.5\n", "ci_level"),
])
def test_config_rejects_impossible_values(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_experiment(write_config(tmp_path, text))


def theory_job(suite):
    return suite.jobs[task.JOB]


def test_overrides_and_smoke_set_trial_counts():
    cfg = theory_job(load_experiment(CONFIG, ["binary.trials=7"], smoke=True))
    assert cfg.binary.trials == 7 and cfg.scalar.trials == tconfig.SMOKE_OVERRIDES["scalar.trials"]
    assert theory_job(load_experiment(CONFIG)) == tconfig.TheoryConfig()  # the file = the paper


def test_smoke_run_writes_every_figure_and_table_and_resumes(tmp_path):
    suite = load_experiment(CONFIG, smoke=True)
    out = run_experiment(suite, tmp_path)
    assert out == tmp_path / "smoke" / "theory"
    task.write_report(out)
    job = out / task.JOB / "seed-0"
    for name in ("figure2_binary.png", "figure3_scalar.png", "extra_heatmap.png",
                 "figure2_published.md", "figure3_published.csv", "README.md"):
        assert (out / name).stat().st_size > 0, name
    for name in ("figure2_theory.csv", "figure2_simulation.csv", "figure3_theory.csv",
                 "figure3_simulation.csv", "extra_heatmap.csv", "config.yaml",
                 "provenance.json", "metrics.jsonl", "done"):
        assert (job / name).stat().st_size > 0, name
    done = (job / "done").read_text()
    run_experiment(suite, tmp_path)  # a finished suite: nothing runs again
    assert (job / "done").read_text() == done
    curves = set(pd.read_csv(job / "figure2_theory.csv").curve)
    assert curves == {"a = 64", "a = 128", "a = 256", "a = n/2", "a = n/4"}
    assert "'a = n/2'" in (out / "README.md").read_text()
