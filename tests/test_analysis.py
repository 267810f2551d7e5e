"""The analysis of trained networks: its measures against hand-computed values, the probe against
brute force, and the study end to end on a smoke-trained network."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from experiments.analysis.measures import (UnitStats, chance_match_probability, cosines,
                                           degrees, partner_overlap, partners,
                                           relative_change, unit_norms, winner_overlap)
from experiments.analysis.probe import layers_of, run_layers
from experiments.core.measures import binary_entropy_ratio, entropy_ratio
from models import (ConvLayerConfig, HiddenLayerConfig, KWinners, NetworkConfig,
                    build_network)
from run import cli

REPO = Path(__file__).resolve().parent.parent


def test_unit_norms_and_nonzero_fan_in():
    norms, fan_in = unit_norms(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    assert norms.tolist() == pytest.approx([5.0, 0.0, math.sqrt(3)])
    assert fan_in.tolist() == [2, 0, 3]


def test_angles_of_known_vectors():
    w = torch.tensor([1.0, 0.0])
    xs = torch.tensor([[1.0, 1.0], [0.0, 2.0], [-3.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    dots = xs @ w  # (5,)
    angles = degrees(cosines(dots.view(5, 1), w.norm().view(1), xs.norm(dim=1, keepdim=True)))
    assert angles.flatten().tolist() == pytest.approx([45.0, 90.0, 180.0, 0.0, 90.0], abs=1e-4)


def test_unit_stats_mean_min_max_with_a_mask():
    stats = UnitStats(2)
    stats.add(torch.tensor([[1.0, 10.0], [3.0, 20.0]]), torch.tensor([[True, False],
                                                                       [True, True]]))
    stats.add(torch.tensor([[5.0, 30.0]]))
    assert stats.mean().tolist() == [3.0, 25.0]
    assert stats.min.tolist() == [1.0, 20.0] and stats.max.tolist() == [5.0, 30.0]
    assert stats.count.tolist() == [3, 2]


def test_duty_cycle_entropy_of_known_duty_cycles():
    assert entropy_ratio([0.1, 0.1, 0.1, 0.1]) == pytest.approx(1.0)
    assert entropy_ratio([0.3, 0.0, 0.0, 0.0]) == pytest.approx(0.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 log 2, max log 3
    assert entropy_ratio([2.0, 1.0, 1.0]) == pytest.approx(1.5 * math.log(2) / math.log(3))
    assert math.isnan(entropy_ratio([0.0, 0.0]))


def test_overlap_of_known_winner_sets_and_relative_change():
    clean = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    noisy = torch.tensor([[1, 0, 1, 0], [1, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    overlap = winner_overlap(clean, noisy)
    assert overlap[:2].tolist() == [0.5, 1.0] and math.isnan(overlap[2])
    change = relative_change(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 0.0]]))
    assert change.tolist() == pytest.approx([4.0 / 5.0])


def test_chance_match_is_the_hypergeometric_tail():
    n, a, theta = 10, 4, 2  # P(overlap >= 2) of two random 4-subsets of 10
    exact = sum(math.comb(a, b) * math.comb(n - a, a - b) for b in range(theta, a + 1))
    assert chance_match_probability(n, a, theta) == pytest.approx(exact / math.comb(n, a))


def test_partners_are_the_next_sample_with_the_same_or_another_label():
    labels = torch.tensor([3, 5, 3, 3, 7])
    assert partners(labels, same=True).tolist() == [2, -1, 3, 0, -1]
    assert partners(labels, same=False).tolist() == [1, 2, 4, 4, 0]


def test_unrelated_overlap_on_a_network_whose_winners_are_the_label():
    """A k-winners layer fed one-hot blocks of its label: every image of a digit has the same 5
    winners and different digits share none, so the same-digit overlap is 1 and the
    other-digit overlap 0 (a uniform random set of 5 of 50 would share 0.5 on average)."""
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 4, 9])
    x = torch.zeros(len(labels), 50)
    for i, label in enumerate(labels):
        x[i, 5 * label:5 * label + 5] = torch.arange(1.0, 6.0)
    layer = KWinners(50, k=5).eval()
    winners = layer(x) != 0
    assert winners.sum(1).tolist() == [5] * len(labels)
    assert partner_overlap(winners, labels, same=True)[:8].tolist() == [1.0] * 8
    assert torch.isnan(partner_overlap(winners, labels, same=True)[8:]).all()  # no partner
    assert partner_overlap(winners, labels, same=False).tolist() == [0.0] * len(labels)


def test_binary_entropy_ratio_is_one_at_the_target_density_and_zero_for_on_off_units():
    assert binary_entropy_ratio([0.1] * 20, 2, 20) == pytest.approx(1.0)
    assert binary_entropy_ratio([1.0] * 2 + [0.0] * 18, 2, 20) == 0.0
    half = binary_entropy_ratio([0.2] * 10 + [0.0] * 10, 2, 20)
    h = lambda p: -p * math.log(p) - (1 - p) * math.log(1 - p)  # noqa: E731
    assert half == pytest.approx(10 * h(0.2) / (20 * h(0.1)))


def test_probe_dots_and_patch_norms_against_brute_force():
    torch.manual_seed(0)
    net = build_network(NetworkConfig(conv=[ConvLayerConfig(3, 40)],
                                      hidden=HiddenLayerConfig(8, 3), input_shape=(1, 12, 12),
                                      k_inference_factor=1.0, boost_strength=0.0)).eval()
    assert [layer.name for layer in layers_of(net)] == ["conv1", "hidden", "output"]
    assert [layer.kind for layer in layers_of(net)] == ["k-winners", "k-winners", "output"]
    x = torch.randn(2, 1, 12, 12)
    seen = run_layers(net, x)
    torch.set_grad_enabled(False)
    conv = net.conv1
    z = conv(x)  # (2, 3, 8, 8) -> pooled (2, 3, 4, 4)
    b, c, i, j = 1, 2, 3, 0
    window = z[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
    r, s = divmod(int(window.argmax()), 2)
    patch = x[b, 0, 2 * i + r:2 * i + r + 5, 2 * j + s:2 * j + s + 5]
    assert seen["conv1"].dots[b, c, i, j] == pytest.approx(float((patch * conv.weight[c, 0]).sum()),
                                                           abs=1e-5)
    assert seen["conv1"].patch_norms[b, c, i, j] == pytest.approx(float(patch.norm()), abs=1e-5)
    assert seen["conv1"].winners.flatten(1).sum(1).tolist() == [40, 40]
    hidden = seen["hidden"]
    expected = hidden.input.clone() @ net.linear.weight.T
    assert torch.allclose(hidden.dots, expected, atol=1e-5)
    assert hidden.winners.sum(1).tolist() == [3, 3]
    assert torch.equal(seen["output"].output, net.output(seen["hidden"].output.clone()))
    assert torch.allclose(F.log_softmax(seen["output"].output, 1), net(x), atol=1e-6)
    torch.set_grad_enabled(True)


def test_analysis_smoke_on_run_folders(mnist_root, tiny_runs, tmp_path, capsys):
    """The study end to end (--smoke: 200 test images, 3 noise levels) on two tiny networks
    (tests/conftest.py): a k-winners one (conv 4 ch, k = 60 of 576; hidden 24, k = 6, half
    of the weights) and a ReLU one."""
    analysis = ["configs/mnist_analysis.yaml", "--smoke", "--out", str(tmp_path),
                "--set", "source=runs", "--set", f"runs={tiny_runs}",
                "--set", "run=[sparse_cnn2, dense_cnn2]", "--set", f"data.root={mnist_root}"]
    assert cli(analysis) == 0, capsys.readouterr().err[-2000:]
    folder = tmp_path / "smoke" / "mnist_analysis"
    overlap = pd.read_csv(folder / "sparse_cnn2" / "seed-42" / "overlap.csv")
    clean = overlap[overlap.level == 0.0].set_index("layer")
    assert clean.loc[["conv1", "hidden"], "overlap"].tolist() == [1.0, 1.0]
    assert clean.loc["output", "prediction_kept"] == 1.0
    assert clean.loc["conv1", "winners"] == 90 and clean.loc["hidden", "winners"] == 9  # k_eval
    assert clean.loc["hidden", "chance_overlap"] == pytest.approx(9 / 24)
    units = pd.read_csv(folder / "sparse_cnn2" / "seed-42" / "units.csv")
    hidden = units[units.layer == "hidden"]
    assert len(hidden) == 24 and (hidden.fan_in == 288).all() and (hidden.fan_in_total == 576).all()
    assert hidden.test_win_rate.sum() == pytest.approx(9, rel=1e-9)  # 9 wins per input
    # the tiny networks are untrained: the weights are the initial ones, rebuilt from the seed
    assert units.initial_weight_norm.to_numpy() == pytest.approx(units.weight_norm.to_numpy())
    assert set(hidden.k) == {6} and set(hidden.n) == {24}
    assert 0 <= clean.loc["hidden", "other_digit_overlap"] <= 1
    assert 0 <= clean.loc["hidden", "same_digit_match"] <= 1
    relu = pd.read_csv(folder / "dense_cnn2" / "seed-42" / "units.csv")
    assert relu[relu.layer == "hidden"].duty_cycle.isna().all()  # no duty cycles in ReLU
    layers = pd.read_csv(folder / "layers.csv")
    assert set(layers.label) == {"tiny sparse_cnn2", "tiny dense_cnn2"}
    for name in ("layers.md", "overlap.png", "weight_norms.png", "angles.png", "duty_cycles.png"):
        assert (folder / name).stat().st_size > 0


def test_seeds_table_pairs_each_layers_measures_by_seed_with_the_stats_module():
    from experiments.analysis.report import seeds_markdown, seeds_table
    from experiments.core.stats import paired
    norms = {"a": [0.5, 0.7, 0.6], "b": [0.4, 0.45, 0.7]}  # per seed, both units alike
    units, overlap = [], []
    for net, values in norms.items():
        for seed, norm in zip((42, 43, 44), values):
            for unit in range(2):
                units.append({"network": net, "label": net.upper(), "layer": "hidden",
                              "kind": "k-winners", "seed": seed, "weight_norm": norm,
                              "initial_weight_norm": 0.5, "fan_in": 4, "fan_in_total": 8,
                              "angle_all_mean": 80.0, "angle_winners_mean": 70.0,
                              "duty_cycle": 0.25 + 0.5 * unit, "test_win_rate": 0.5,
                              "k": 1, "n": 2})
            for level in (0.0, 0.1, 0.5):
                overlap.append({"network": net, "layer": "hidden", "seed": seed,
                                "level": level, "overlap": 1 - level * (seed - 41),
                                "relative_change": level, "winners": 1, "space": 2})
    units, overlap = pd.DataFrame(units), pd.DataFrame(overlap)
    table = seeds_table(units, overlap, pairs=[("a", "b")]).set_index(["compared", "measure"])
    c = paired(norms["a"], norms["b"])
    row = table.loc[("A - B", "weight norm")]
    assert (row.n, row["mean"], row.low, row.high) == pytest.approx((3, c.mean, c.t_low, c.t_high))
    assert row.sign_p == pytest.approx(c.sign_p) and row.wilcoxon_p == pytest.approx(c.wilcoxon_p)
    assert table.loc[("A", "norm / initial"), "mean"] == pytest.approx(np.mean(norms["a"]) / 0.5)
    assert table.loc[("A", "overlap at 50% noise (%)"), "mean"] == pytest.approx(100 * (1 - 1.0))
    assert table.loc[("A - B", "overlap at 10% noise (%)"), "mean"] == pytest.approx(0.0)
    shown = seeds_markdown(seeds_table(units, overlap, pairs=[("a", "b")]))
    assert shown.loc[shown.measure == "weight norm", "A"].item() == "0.600 [0.352, 0.848] (n 3)"
    assert seeds_table(units[units.seed == 42], overlap, pairs=[("a", "b")]) is None


def test_analysis_refuses_missing_runs_before_any_work(tmp_path, capsys):
    code = cli(["configs/mnist_analysis.yaml", "--out", str(tmp_path), "--set", "source=runs",
                "--set", f"runs={tmp_path / 'nothing'}"])
    err = capsys.readouterr().err
    assert code == 2 and "config.yaml: not found" in err and err.count("\n") == 1
    assert not (tmp_path / "mnist_analysis").exists()
