"""The statistics module (experiments/core/stats.py) against scipy and by hand."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from experiments.core.stats import (adjusted_p, bootstrap_interval, claim, mcnemar,
                                    mcnemar_claim, paired, t_interval, t_test_p)

A = np.array([102_315, 101_020, 103_400, 104_050, 102_510, 99_870])
B = np.array([97_010, 96_400, 99_900, 98_100, 97_500, 100_020])


def test_paired_matches_scipy_on_hand_made_pairs():
    c = paired(A, B)
    d = A - B
    assert c.n == 6 and c.mean == pytest.approx(d.mean())
    low, high = sp.t.interval(0.95, 5, loc=d.mean(), scale=sp.sem(d))
    assert (c.t_low, c.t_high) == pytest.approx((low, high))
    assert (c.higher, c.lower) == (5, 1)
    assert c.sign_p == pytest.approx(sp.binomtest(5, 6).pvalue)  # 0.21875
    assert c.sign_p == pytest.approx(14 / 64)
    assert c.wilcoxon_p == pytest.approx(sp.wilcoxon(d).pvalue)
    assert c.boot_low < d.mean() < c.boot_high


def test_five_seeds_all_one_way_give_the_exact_tests_their_floor():
    c = paired([3, 4, 5, 6, 7], [0, 0, 0, 0, 0])
    assert c.sign_p == pytest.approx(0.0625) and c.wilcoxon_p == pytest.approx(0.0625)


def test_ties_and_degenerate_inputs():
    c = paired([1, 2, 3], [1, 2, 3])
    assert (c.mean, c.higher, c.lower, c.sign_p, c.wilcoxon_p) == (0, 0, 0, 1.0, 1.0)
    assert (c.t_low, c.t_high) == (0, 0) and (c.boot_low, c.boot_high) == (0, 0)
    one = paired([5], [2])
    assert one.n == 1 and math.isnan(one.t_low) and (one.boot_low, one.boot_high) == (3, 3)
    with pytest.raises(ValueError, match="equally long"):
        paired([1, 2], [1])


def test_bootstrap_is_seeded_and_covers_the_mean():
    d = np.array([2.0, -1.0, 4.0, 3.0, 0.5, 1.5, 2.5])
    assert bootstrap_interval(d) == bootstrap_interval(d)
    low, high = bootstrap_interval(d)
    t_low, t_high = t_interval(d)
    assert low < d.mean() < high and t_low < low  # the percentile interval is the narrower here


def test_mcnemar_counts_discordant_images_and_tests_them_exactly():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1], bool)
    m = mcnemar(a, b)
    assert (m.n, m.only_a, m.only_b) == (10, 6, 1)
    assert m.p == pytest.approx(sp.binomtest(6, 7).pvalue)
    assert m.diff == pytest.approx(0.5) and m.low <= 0.5 <= m.high


def test_a_claim_states_n_interval_and_tests_and_cannot_be_made_without_n():
    text = claim("Sparse CNN-2 − Dense CNN-2", paired(A, B), "noise score", source="records: x")
    assert "mean of 6 paired seeds" in text and "higher on 5, lower on 1 of 6" in text
    assert "sign test p = 0.219" in text and "Wilcoxon p =" in text and "by t" in text
    assert text.endswith("records: x.")

    class NoN:
        mean, t_low, t_high = 1.0, 0.0, 2.0
    with pytest.raises(ValueError, match="number of seeds"):
        claim("a − b", NoN(), "noise score")
    with pytest.raises(ValueError, match="number of images"):
        claim("a − b", type("Zero", (), {"n": 0})(), "accuracy", units="images")


def test_a_mcnemar_claim_states_n_interval_discordant_images_and_p():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1], bool)
    text = mcnemar_claim("a − b", mcnemar(a, b), "worst case at eps 0.1")
    assert "+50.0 points (80.0% vs 30.0% on the same 10 images" in text
    assert "only under the first on 6, only under the second on 1" in text
    assert f"exact McNemar p = {sp.binomtest(6, 7).pvalue:.3g}" in text
    with pytest.raises(ValueError, match="number of images"):
        mcnemar_claim("a − b", type("Zero", (), {"n": 0})(), "accuracy")


def test_the_t_test_p_read_off_the_interval_is_scipys_and_adjusted_p_is_benjamini_hochberg():
    assert t_test_p(paired(A, B)) == pytest.approx(sp.ttest_rel(A, B).pvalue, rel=1e-9)
    assert t_test_p(paired(A[:2], B[:2])) == pytest.approx(sp.ttest_rel(A[:2], B[:2]).pvalue)
    assert t_test_p(paired(A, A)) == 1.0 and t_test_p(paired(A, A - 5)) == 0.0
    assert math.isnan(t_test_p(paired(A[:1], B[:1])))
    ps = [0.01, 0.04, 0.03, 0.5]  # BH: p_(i) * m / i, then the running minimum from the top
    assert adjusted_p(ps) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
