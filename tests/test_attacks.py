"""The attack harness: attacks against closed forms, the threat model bit for bit, networks left
untouched, surrogate gradients on the backward pass only, and the adversarial study end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.cli import load_experiment, run_experiment
from experiments.robust import (adversarial, adversarial_records, adversarial_report,
                                adversarial_task, autoattack)
from experiments.robust.adversarial_records import Records
from experiments.robust.attacks import (ddn, eot_gradient, fgsm, margin, pgd, pgd_targeted,
                                        square, square_fraction)
from experiments.robust.checks import all_checks, attack_rows, diagnostics_checks, worst
from experiments.robust.diagnostics import finite_difference, gradient_stats
from experiments.robust.harness import PixelModel, bounds, check_constraints, frozen, project
from experiments.robust.l0 import changed_pixels, check_pixels, sparse_rs
from models import (ConvLayerConfig, HiddenLayerConfig, KWinners, NetworkConfig, build_network,
                    surrogate_gradients)

CONFIG = "configs/mnist_adversarial.yaml"


def linear_case(eps=0.05):
    """A two-class linear model z = W x + b on 2x2 images that stays correct at its worst
    case, and that worst case: x* = the corner of [lo, hi] along sign(w_other - w_y)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([3.0, 0.0]))  # class 0 wins by a wide margin
    x = torch.rand(8, 1, 2, 2) * 0.8 + 0.1
    y = torch.zeros(8, dtype=torch.long)
    lo, hi = bounds(x, eps)
    c = (model[1].weight[1] - model[1].weight[0]).detach().view(1, 1, 2, 2)
    return model, x, y, eps, torch.where(c > 0, hi, lo)


def closed_form_loss(model, x_star, y):
    """CE at x*: softplus(z_other - z_y), the largest CE over the ball for two classes."""
    with torch.no_grad():
        return F.softplus(margin(model(x_star), y))


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_pgd_and_fgsm_reach_the_linear_models_closed_form_worst_case(loss):
    model, x, y, eps, x_star = linear_case()
    for adv in (pgd(model, x, y, eps, steps=40, loss=loss, generator=torch.Generator()),
                fgsm(model, x, y, eps, loss)):
        assert torch.equal(adv, x_star)
        with torch.no_grad():
            ce = F.cross_entropy(model(adv), y, reduction="none")
        assert torch.allclose(ce, closed_form_loss(model, x_star, y), rtol=1e-6)


def test_square_reaches_the_linear_models_closed_form_worst_case_without_gradients():
    model, x, y, eps, x_star = linear_case()
    adv = square(model, x, y, eps, queries=200, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adv, x_star)


def test_targeted_pgd_aims_at_the_likeliest_wrong_classes_in_turn():
    # Three classes on 2x2 images at 0.5: class 0 wins (1.5); class 1 is the likeliest wrong
    # one (1.1) but cannot pass it within eps 0.1 (its margin moves by 0.04 at most); class 2
    # (0.8) can, by 0.8. The first run aims at class 1 only, the second at class 2.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0] * 4, [-0.1] * 4, [2.0] * 4]))
        model[1].bias.copy_(torch.tensor([1.5, 1.3, -3.2]))
    x, y, eps = torch.full((6, 1, 2, 2), 0.5), torch.zeros(6, dtype=torch.long), 0.1
    lo, _ = bounds(x, eps)
    one = pgd_targeted(model, x, y, eps, 40, targets=1, generator=torch.Generator())
    assert torch.equal(one, lo)  # every step along sign(w_1 - w_0): the low corner, not fooled
    two = pgd_targeted(model, x, y, eps, 40, targets=2, generator=torch.Generator())
    with torch.no_grad():
        assert model(one).argmax(1).tolist() == [0] * 6
        assert model(two).argmax(1).tolist() == [2] * 6


def test_margin_is_the_best_other_class_minus_the_true_one():
    z = torch.tensor([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    assert margin(z, torch.tensor([1, 0])).tolist() == [-3.0, 3.0]


def test_square_window_shrinks_on_the_papers_schedule():
    assert square_fraction(0, 1000) == 0.8
    assert square_fraction(1, 1000) == 0.8  # query 10 of 10,000
    assert square_fraction(5, 1000) == 0.4  # query 50 of 10,000
    assert square_fraction(999, 1000) == pytest.approx(0.8 / 512)


def test_bounds_round_inwards_so_the_ball_holds_exactly():
    x = torch.tensor([0.0, 0.30000001192092896, 0.7, 1.0])
    for eps in (0.05, 0.1, 0.3, 1 / 3, 1.0):
        lo, hi = bounds(x, eps)
        assert (x.double() - lo.double()).max() <= eps and (hi.double() - x.double()).max() <= eps
        assert lo.min() >= 0 and hi.max() <= 1
        assert (lo.double() - (x.double() - eps).clamp(min=0)).abs().max() < 1e-7  # tight
    naive = (x - 0.1) - x  # float32 arithmetic: can overshoot eps by one ulp
    assert bool((naive.abs().double() > 0.1).any())


def small_network(k=True):
    torch.manual_seed(1)
    cfg = NetworkConfig(conv=[ConvLayerConfig(3, k=40 if k else None)],
                        hidden=HiddenLayerConfig(16, k=5 if k else None),
                        k_inference_factor=1.5, boost_strength=1.5)
    net = build_network(cfg)
    net.train()(torch.randn(32, 1, 28, 28))  # duty cycles away from zero
    return net


def attacks(model, eps):
    g = torch.Generator().manual_seed(0)
    return {"fgsm": lambda x, y: fgsm(model, x, y, eps),
            "pgd": lambda x, y: pgd(model, x, y, eps, 3, "margin", restarts=2, generator=g),
            "pgd-no-stop": lambda x, y: pgd(model, x, y, eps, 3, generator=g, stop_early=False),
            "pgd-eot": lambda x, y: pgd(model, x, y, eps, 2, "margin", generator=g,
                                        gradient=eot_gradient(3, 0.05, g)),
            "square": lambda x, y: square(model, x, y, eps, 8, generator=g)}


@pytest.mark.parametrize("eps", [0.1, 0.3, 1.0])
def test_every_attack_stays_in_the_box_and_the_ball_exactly(eps):
    net = small_network()
    model = PixelModel(net.eval())
    x = torch.rand(8, 1, 28, 28)
    x[:3] = x[:3].round()  # pixels at exactly 0 and 1, where the box binds
    y = torch.randint(0, 10, (8,))
    for name, attack in attacks(model, eps).items():
        adv = attack(x, y)
        distance = (adv.double() - x.double()).abs()
        assert adv.min() >= 0 and adv.max() <= 1, name
        assert distance.max() <= eps, name
        assert check_constraints(adv, x, eps) == distance.max()
    with pytest.raises(RuntimeError, match="left the L-inf ball"):
        check_constraints(x + 2 * eps, x, eps)


def test_attacks_leave_every_buffer_and_parameter_unchanged():
    net = small_network()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert net.training  # the guard must put it into eval mode
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    with frozen(net):
        for mode, temperature in ((None, None), ("identity", None), ("relu", None),
                                  ("soft", 0.3)):
            with surrogate_gradients(net, mode, temperature):
                for attack in attacks(PixelModel(net), 0.2).values():
                    attack(x, y)
    assert not net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in net.parameters())  # input gradients only
    with pytest.raises(RuntimeError, match="duty_cycle"):
        with frozen(net):
            net.train()(torch.rand(4, 1, 28, 28))  # a training step would move duty cycles


@pytest.mark.parametrize("mode", ["identity", "relu"])
def test_surrogate_gradients_change_the_networks_backward_pass_only(mode):
    model = PixelModel(small_network().eval())
    x = torch.rand(6, 1, 28, 28, requires_grad=True)
    y = torch.randint(0, 10, (6,))
    out = model(x)
    (grad,) = torch.autograd.grad(F.nll_loss(out, y), x)
    with surrogate_gradients(model, mode):
        surrogate_out = model(x)
        (surrogate_grad,) = torch.autograd.grad(F.nll_loss(surrogate_out, y), x)
    assert torch.equal(surrogate_out, out)
    assert not torch.allclose(surrogate_grad, grad)
    dense = PixelModel(small_network(k=False).eval())
    with surrogate_gradients(dense, mode):  # no k-winners layer: nothing to replace
        (same,) = torch.autograd.grad(F.nll_loss(dense(x), y), x)
    assert torch.equal(same, torch.autograd.grad(F.nll_loss(dense(x), y), x)[0])


def test_pgd_stops_each_image_at_a_misclassified_iterate():
    model = PixelModel(small_network().eval())
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    adv = pgd(model, x, y, 0.3, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled = model(adv).argmax(1) != y
    assert fooled.any()
    assert torch.equal(project(adv, *bounds(x, 0.3)), adv)


def smoke(tiny_runs, mnist_root, out, *extra):
    suite = load_experiment(CONFIG, ["source=runs", f"runs={tiny_runs}",
                                           "run=[sparse_cnn2,dense_cnn2]", "images=40",
                                           f"data.root={mnist_root}", *extra], smoke=True)
    return run_experiment(suite, out, threads=1)


def test_adversarial_smoke_records_report_and_resume(tiny_runs, mnist_root, tmp_path, capsys,
                                                     monkeypatch):
    with monkeypatch.context() as patch:  # first without pyautoattack: the study says so
        patch.setattr(autoattack, "installed", lambda: False)
        exp = smoke(tiny_runs, mnist_root, tmp_path)
    run = exp / "sparse_cnn2" / "seed-42"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    names = [r["attack"] for r in records]
    assert names[:3] == ["clean", "diagnostics", "fgsm"] and "transfer" in names
    assert {"autoattack_eps0.2", "ddn", "sparse_rs", "random_pixels", "pgd_ce@6"} <= set(names)
    auto = next(r for r in records if r["method"] == "autoattack")
    assert auto["skipped"].startswith("pyautoattack is not installed")
    assert not (run / "done").exists()  # so that a rerun with the package runs that step
    pgd_rows = pd.read_csv(run / "attacks" / "pgd_ce.csv")
    assert sorted(set(pgd_rows.eps)) == [0.2, 1.0] and len(pgd_rows) == 2 * 40
    assert (pgd_rows[pgd_rows.eps == 1.0].correct == 0).all()
    clean = pd.read_csv(run / "attacks" / "clean.csv").set_index("image").correct
    assert (pgd_rows.set_index("image").correct <= clean.reindex(pgd_rows.image).values).all()
    dense = (exp / "dense_cnn2" / "seed-42" / "metrics.jsonl").read_text()
    assert "no k-winners layer" in dense and len(list(exp.glob("transfer/*/examples.pt"))) == 1
    paths = adversarial_report.write_report(exp)
    assert {p.name for p in paths} >= {"accuracy.md", "worst_case.md", "worst_case.csv",
                                        "worst_case_curves.png", "worst_case_curves.csv",
                                        "checks.md"}
    assert len(paths) == len(set(paths))  # no file written twice under one name
    checks = pd.read_csv(exp / "checks.csv")
    assert len(set(checks.check)) == 12 and set(checks.network) == {"sparse_cnn2", "dense_cnn2"}
    assert {p.name for p in paths} >= {"l0.md", "l0_curves.png", "min_norm.md",
                                        "diagnostics.md", "loss_along_gradient.png"}
    assert "pyautoattack is not installed" in (exp / "checks.md").read_text()
    suite = load_experiment(CONFIG, ["source=runs", f"runs={tiny_runs}", "images=40",
                                     "run=[sparse_cnn2,dense_cnn2]", f"data.root={mnist_root}"],
                            smoke=True)
    steps = adversarial_records.load_records(exp).steps
    progress = adversarial_task.progress_markdown(steps, suite).splitlines()
    sparse = next(line for line in progress if line.startswith("| sparse_cnn2 | 42 |"))
    planned = len(adversarial.plan(suite.jobs["sparse_cnn2"]))
    assert f"| {planned - 1} of {planned} |" in sparse  # all but AutoAttack's step
    assert sparse.endswith("| autoattack_eps0.2 |")
    # an interrupted job resumes at its first unfinished step and changes nothing before it
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines[:3]))
    kept = (run / "attacks" / "diagnostics.csv").stat().st_mtime_ns
    smoke(tiny_runs, mnist_root, tmp_path)
    assert "0 already done, 2 to run" in capsys.readouterr().out
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["attack"] for r in again] == names
    assert (run / "attacks" / "diagnostics.csv").stat().st_mtime_ns == kept
    if autoattack.installed():
        auto = next(r for r in again if r["method"] == "autoattack")
        assert "skipped" not in auto and (run / "done").is_file()
        assert {"chain", "warnings"} <= set(auto["results"][0])
        adversarial_report.write_report(exp)
        assert len(set(pd.read_csv(exp / "checks.csv").check)) == 14
        assert "after square" in (exp / "autoattack.md").read_text()


def test_checks_fail_visibly_when_a_gradient_free_attack_beats_white_box():
    rows = []
    for image, (clean, white, square_) in enumerate([(1, 1, 0), (1, 0, 0), (0, 0, 0)]):
        rows += [{"network": "n", "seed": 42, "image": image, "eps": 0.0, "role": "clean",
                  "method": "clean", "attack": "clean", "correct": clean,
                  "zero_grad_ce": 0, "zero_grad_margin": 0},
                 {"network": "n", "seed": 42, "image": image, "eps": 0.1, "role": "attack",
                  "method": "pgd", "attack": "pgd_ce", "correct": white},
                 {"network": "n", "seed": 42, "image": image, "eps": 0.1, "role": "attack",
                  "method": "square", "attack": "square", "correct": square_}]
    steps = pd.DataFrame([{"network": "n", "method": "pgd",
                           "results": [{"eps": 0.1, "max_perturbation": 0.1}]}])
    checks = all_checks(Records(linf=pd.DataFrame(rows), steps=steps)).set_index("check")
    row = checks.loc["white-box <= gradient-free, per image"]
    assert not row.passed and row.detail.startswith("1 of 3 (image, eps) pairs")
    assert checks.loc["every x' within its threat model and the [0, 1] box"].passed


@pytest.mark.slow
def test_adversarial_smoke_on_smoke_trained_networks(mnist_root, tmp_path, capsys):
    from run import cli
    train = ["configs/mnist_table1.yaml", "--smoke", "--out", str(tmp_path), "--set",
             "run=[sparse_cnn2,dense_cnn2]", "--set", f"data.root={mnist_root}"]
    assert cli(train) == 0, capsys.readouterr().err[-2000:]
    suite = load_experiment(CONFIG, ["source=runs", "run=[sparse_cnn2,dense_cnn2]",
                                           f"runs={tmp_path / 'smoke' / 'mnist_table1'}",
                                           f"data.root={mnist_root}"], smoke=True)
    exp = run_experiment(suite, tmp_path, threads=1)
    adversarial_report.write_report(exp)
    acc = pd.read_csv(exp / "accuracy.csv").set_index(["network", "attack"])
    for network in ("sparse_cnn2", "dense_cnn2"):
        assert acc.loc[(network, "worst case"), "accuracy"] <= acc.loc[(network, "clean"),
                                                                       "accuracy"]
    assert (exp / "checks.md").read_text().count("**") >= 2 * 16


@pytest.mark.parametrize("override, message", [
    ("attacks.fgsm.method=bim", "attacks.fgsm.method: must be one of fgsm, pgd"),
    ("attacks.square.surrogate=identity", "square.surrogate: the square attack uses no gradient"),
    ("attacks.pgd_ce.surrogate=soft", "pgd_ce.temperature: the soft surrogate needs one"),
    ("attacks.fgsm.eot=4", "fgsm.eot: only PGD averages its gradient"),
    ("attacks.pgd_ce.targets=9", "pgd_ce.targets: only PGD on the margin"),
    ("attacks.pgd_ce.engine=sparse", "pgd_ce.engine: only the query-only searches"),
    ("attacks.square.engine=fast", "square.engine: must be one of plain, sparse"),
    ("pixels=[8,4]", "pixels: must be increasing"),
    ("convergence.attacks=[fgsm]", "convergence.attacks: 'fgsm' is not a PGD attack"),
    ("eps=[0.1,1.5]", "eps: must be a non-empty list in (0, 1)"),
    ("data.name=gsc", "data.name: these studies perturb MNIST pixels")])
def test_a_wrong_setting_stops_before_any_work_naming_its_key(override, message):
    from experiments.core.config import ConfigError
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_experiment(CONFIG, [override])


def test_an_override_of_one_attack_keeps_the_others():
    cfg = load_experiment(CONFIG, ["attacks.square.loss=ce"]).jobs["sparse_cnn2"]
    assert len(cfg.attacks) == 18 and cfg.attacks["square"].loss == "ce"
    assert cfg.attacks["pgd_ce_relu"].surrogate == "relu"


# ---------------------------------------------------------------- masking, made on purpose

class Quantised(nn.Module):
    """A deliberately masked toy: a linear model on pixels rounded to tenths (a step
    function), so every input gradient is exactly zero while the forward pass still moves."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return self.linear(torch.round(x * 10) / 10 + 0 * x)  # x stays in the graph, at slope 0


def masked_case():
    """The quantised toy on 4x4 images in [0.3, 0.7], correct with a margin only the corner
    of the eps = 0.3 ball crosses (random starts do not: 5 standard deviations away)."""
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        linear[1].weight.copy_(torch.stack([torch.zeros(16), torch.ones(16)]))
        linear[1].bias.copy_(torch.tensor([0.0, 0.0]))
    x = torch.full((6, 1, 4, 4), 0.5)
    with torch.no_grad():  # class 0 wins by 3.6 at x; the corner x + 0.3 gives class 1 +1.2
        linear[1].bias[0] = linear(x)[0, 1] + 3.6
    return Quantised(linear), x, torch.zeros(6, dtype=torch.long)


def diagnostics_frame(model, x, y, network):
    fd = {h: finite_difference(model, x, y, h) for h in (0.001, 0.03)}
    stats, _ = gradient_stats(model, x, y, fd, 0.3, 11)
    return pd.DataFrame({"network": network, "gradient": "own", "clean": 1, "image": range(len(x)),
                         **{k: v.tolist() for k, v in stats.items()}})


def test_a_masked_step_function_is_flagged_and_broken_only_without_gradients():
    toy, x, y = masked_case()
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))  # the same model, unquantised
    smooth.load_state_dict(toy.linear.state_dict())
    frame = pd.concat([diagnostics_frame(toy, x, y, "toy"),
                       diagnostics_frame(smooth, x, y, "smooth")])
    assert (frame[frame.network == "toy"].grad_norm == 0).all()
    flags = pd.DataFrame([vars(c) for c in diagnostics_checks(frame)]).set_index(
        ["network", "check"]).passed
    assert not flags["toy"].any()  # zero gradient: misaligned, flat; every diagnostic fails
    assert flags["smooth"].all()
    g = torch.Generator().manual_seed(0)
    for adv in (fgsm(toy, x, y, 0.3), pgd(toy, x, y, 0.3, 20, "margin", 2, g)):
        with torch.no_grad():
            assert (toy(adv).argmax(1) == y).all()  # the gradient attacks see nothing
    adv = square(toy, x, y, 0.3, 300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (toy(adv).argmax(1) != y).all()  # the gradient-free one breaks every image


class KWinnersStep(nn.Module):
    """A k-winners toy whose exact gradient is zero: u = (2 mean(x), 1), k = 1 of 2 winners,
    z = (2 out_2, 1). While the constant unit wins (mean(x) < 0.5) class 0 wins and nothing
    in the output depends on x; only the competition between the two units does."""

    def __init__(self):
        super().__init__()
        self.u, self.out = nn.Linear(16, 2), nn.Linear(2, 2)
        self.kw = KWinners(2, 1)
        with torch.no_grad():
            self.u.weight.copy_(torch.stack([torch.full((16,), 2 / 16), torch.zeros(16)]))
            self.u.bias.copy_(torch.tensor([0.0, 1.0]))
            self.out.weight.copy_(torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
            self.out.bias.copy_(torch.tensor([0.0, 1.0]))

    def forward(self, x):
        return self.out(self.kw(self.u(x.flatten(1))))


def test_the_soft_top_k_breaks_a_k_winners_step_that_exact_and_bpda_gradients_cannot():
    toy = KWinnersStep().eval()
    x, y = torch.full((4, 1, 4, 4), 0.35), torch.zeros(4, dtype=torch.long)
    for mode in (None, "identity", "relu"):
        with surrogate_gradients(toy, mode):
            adv = fgsm(toy, x, y, 0.3, "margin")
        assert torch.equal(adv, x)  # sign(0): no step at all
    with surrogate_gradients(toy, "soft", 0.3):
        adv = pgd(toy, x, y, 0.3, 10, "margin", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (toy(adv).argmax(1) != y).all()


# ---------------------------------------------------------------- minimum norm and L0

def test_ddn_finds_the_linear_models_minimum_l2_distance_and_never_beats_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = torch.rand(8, 1, 4, 4) * 0.2 + 0.4  # far from the box's faces: the box never binds
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([0.3, 0.0]))
        z = model(x)
    y = z.argmax(1)
    w = model[1].weight.detach()
    exact = (z[:, 0] - z[:, 1]).abs() / (w[0] - w[1]).norm()  # distance to the boundary
    adv, distance = ddn(model, x, y, steps=200)
    with torch.no_grad():
        assert (model(adv).argmax(1) != y).all()
    assert torch.allclose(distance, (adv - x).flatten(1).norm(dim=1))
    assert (distance >= exact * (1 - 1e-5)).all() and (distance <= exact * 1.05).all()


@pytest.mark.parametrize("pixels", [1, 3, 39])
def test_the_l0_attack_never_changes_more_than_t_pixels(pixels):
    net = PixelModel(small_network().eval())
    x = torch.rand(10, 1, 28, 28)
    x[:4] = x[:4].round()  # binary images: a pixel set to its own value is not a change
    y = torch.randint(0, 10, (10,))
    adv = sparse_rs(net, x, y, pixels, 30, generator=torch.Generator().manual_seed(0))
    assert (changed_pixels(adv, x) <= pixels).all() and adv.min() >= 0 and adv.max() <= 1
    assert check_pixels(adv, x, pixels) <= pixels
    with pytest.raises(RuntimeError, match="changed"):
        check_pixels(torch.where(x > 0.5, 0.0, 1.0), x, pixels)


def test_the_l0_attack_finds_the_few_pixels_a_linear_model_hangs_on():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[1, :3] = 1.0  # class 1 needs the first three of 8 x 8 pixels lit
        model[1].bias.copy_(torch.tensor([2.5, 0.0]))
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    adv = sparse_rs(model, x, y, 3, 3000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(adv).argmax(1) == 1).all()
    assert (changed_pixels(adv, x) == 3).all()


# ---------------------------------------------------------------- the worst case

def test_the_worst_case_is_the_per_image_minimum_over_every_attack_row_present():
    rng = np.random.default_rng(0)
    rows = []
    for attack, role, method, images in [("pgd_ce", "attack", "pgd", 50),
                                         ("autoattack", "attack", "autoattack", 50),
                                         ("pgd_ce@100", "convergence", "pgd", 20),
                                         ("square", "attack", "square", 50)]:
        for eps in (0.1, 0.2):
            rows += [{"network": "n", "seed": 42, "attack": attack, "role": role,
                      "method": method, "eps": eps, "image": i,
                      "correct": int(rng.random() < 0.7)} for i in range(images)]
    rows += [{"network": "n", "seed": 42, "attack": "pgd_ce", "role": "attack", "method": "pgd",
              "eps": 1.0, "image": i, "correct": 0} for i in range(50)]
    frame = pd.DataFrame(rows)
    expected = {}
    for r in rows:
        if r["eps"] < 1:
            key = (r["eps"], r["image"])
            expected[key] = min(expected.get(key, 1), r["correct"])
    got = worst(attack_rows(frame))
    assert {(e, i): v for (_, _, e, i), v in got.items()} == expected
    clean = frame[frame.attack == "pgd_ce"].assign(attack="clean", role="clean", method="clean",
                                                   eps=0.0, correct=1, surrogate=None,
                                                   label="N").drop_duplicates("image")
    acc = adversarial_report.accuracy_frame(pd.concat([clean, frame.assign(surrogate=None,
                                                                          label="N")]))
    table = acc[acc.attack == adversarial_report.WORST].set_index("eps").accuracy
    for eps in (0.1, 0.2):
        assert table[eps] == pytest.approx(
            np.mean([v for (e, _), v in expected.items() if e == eps]))


@pytest.mark.skipif(not autoattack.installed(), reason="pyautoattack is not installed")
def test_our_autoattack_chain_fools_exactly_the_images_the_library_chain_does():
    from pyautoattack import AutoAttack
    from experiments.robust.config import AutoAttackConfig
    model = PixelModel(small_network().eval())
    torch.manual_seed(3)
    x, y = torch.rand(24, 1, 28, 28), torch.randint(0, 10, (24,))
    with torch.no_grad():
        y[:16] = model(x[:16]).argmax(1)  # 16 correct, the rest mostly not
        keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    cfg = AutoAttackConfig(iterations=4, targets=2, queries=30)
    fab = autoattack.fab_t(model, x, y, cfg, seed=0, batch_size=7)
    for eps in (0.02, 0.05):
        adv, fooled_by, _ = autoattack.chain(model, x, y, eps, fab, cfg, 0, 7, len(x))
        library = AutoAttack(model, version="standard", eps=eps, seed=0)
        library.apgd.n_iter = library.apgd_targeted.n_iter = library.fab.n_iter = 4
        library.apgd_targeted.n_target_classes = library.fab.n_target_classes = 2
        library.square.n_queries = 30
        with torch.random.fork_rng(devices=[]):
            theirs, _ = library.run_standard_evaluation(x, y, batch_size=7)
        with torch.no_grad():
            ours_wrong, their_wrong = model(adv).argmax(1) != y, model(theirs).argmax(1) != y
        assert torch.equal(ours_wrong, their_wrong)
        assert [bool(f) for f in fooled_by] == ours_wrong.tolist()


def test_a_rerun_keeps_only_the_steps_whose_settings_are_unchanged(tmp_path):
    from experiments.core.lifecycle import Run
    from experiments.core.records import write_jsonl
    from experiments.robust.adversarial import plan, resume, settings
    cfg = load_experiment(CONFIG, ["images=10"]).jobs["sparse_cnn2"]
    steps = {s.name: s for s in plan(cfg)}
    old_fgsm = {"attack": "fgsm", **settings(steps["fgsm"])}
    for key in ("temperature", "eot", "eot_std", "threat", "engine"):  # a record from before
        old_fgsm.pop(key)
    changed = {"attack": "pgd_ce", **settings(steps["pgd_ce"]), "steps": 7}
    gone = {"attack": "autoattack", "role": "crosscheck", "method": "autoattack"}
    folder = tmp_path / "run"
    for name in ("fgsm", "pgd_ce", "autoattack", "pgd_ce_identity"):
        path = folder / "attacks" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("image,eps,correct\n")
    write_jsonl(folder / "metrics.jsonl", [old_fgsm, changed, gone])
    run = Run(folder, finished=False)
    resume(run, list(steps.values()))
    assert [r["attack"] for r in run.records] == ["fgsm"]
    assert sorted(p.stem for p in (folder / "attacks").glob("*.csv")) == ["fgsm",
                                                                          "pgd_ce_identity"]
    assert [s for s in steps if s.startswith("autoattack")] == [
        f"autoattack_eps{e:g}" for e in sorted(cfg.eps, reverse=True)]  # largest eps first


def test_a_done_run_reopens_for_an_attack_added_since_and_keeps_its_records(tmp_path, capsys):
    from experiments.core.config import ConfigError
    from experiments.core.records import write_jsonl
    from experiments.core.runs import claim_dir, job_list, mark_done, resolved_config
    from experiments.core.task import reopen_done
    suite = load_experiment(CONFIG, ["images=10", "run=[sparse_cnn2]"])
    (job,) = job_list(suite, tmp_path)
    claim_dir(job.folder, resolved_config(job.config, job.name, job.seed))
    names = [s.name for s in adversarial.plan(job.config)]
    write_jsonl(job.folder / "metrics.jsonl", [{"attack": n} for n in names])
    mark_done(job.folder, len(names))
    reopen_done(suite, tmp_path, adversarial_task.new_steps)
    assert (job.folder / "done").is_file() and capsys.readouterr().out == ""  # nothing new
    before = [n for n in names if n != "pgd_targeted_soft_t01"]  # finished before it existed
    write_jsonl(job.folder / "metrics.jsonl", [{"attack": n} for n in before])
    other = load_experiment(CONFIG, ["images=20", "run=[sparse_cnn2]"])  # another config's run
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        reopen_done(other, tmp_path, adversarial_task.new_steps)
    assert (job.folder / "done").is_file()
    reopen_done(suite, tmp_path, adversarial_task.new_steps)
    assert not (job.folder / "done").exists()
    assert "sparse_cnn2 seed 42: reopened (1 new step(s): pgd_targeted_soft_t01)" in (
        capsys.readouterr().out)
    assert len((job.folder / "metrics.jsonl").read_text().splitlines()) == len(before)


@pytest.mark.parametrize("attack", [
    "square", "sparse_rs",
    pytest.param("autoattack", marks=pytest.mark.skipif(not autoattack.installed(),
                                                        reason="pyautoattack is not installed"))])
def test_the_sparse_engine_answers_a_searchs_queries_and_the_network_its_verdict(
        attack, mnist_root, tmp_path, monkeypatch):
    """With ``engine: sparse`` the queries of Square, Sparse-RS and AutoAttack's Square go to
    the shipped network's sparse_inference engine, and none with ``plain``; the recorded
    verdicts are the network's own. On the shipped Sparse CNN-2 the two searches find the same
    x' here (their logits agree to rounding)."""
    from experiments.robust.adversarial import Context, plan, test_subset
    from experiments.robust import steps as steps_module
    from models import load_pretrained
    from models.inference import SparseInference
    overrides = [f"data.root={mnist_root}", "images=24", "queries=30", "sparse_rs_queries=30",
                 "eps=[0.3]", "pixels=[196]", "autoattack.iterations=2",
                 "autoattack.targets=2", "autoattack.queries=30"]
    records, queries = {}, []
    engine_forward = SparseInference.forward

    def counted(self, x):
        queries[-1] += len(x)
        return engine_forward(self, x)
    monkeypatch.setattr(SparseInference, "forward", counted)
    for engine in ("plain", "sparse"):
        cfg = load_experiment(CONFIG, overrides + [f"attacks.{attack}.engine={engine}"]
                              ).jobs["sparse_cnn2"]
        (step,) = [s for s in plan(cfg) if s.name.startswith(attack)]
        assert step.engine == engine
        ctx = Context(cfg, load_pretrained("sparse_cnn2").eval(), 42, *test_subset(cfg),
                      tmp_path / engine)
        queries.append(0)
        frames, summary = steps_module.RUNNERS[step.method](ctx, step)
        records[engine] = frames[""]
        assert summary["results"][0]["accuracy"] == frames[""]["correct"].mean()
    assert queries[0] == 0 and queries[1] > 0
    assert records["plain"]["correct"].sum() < 24  # the search fooled some images
    pd.testing.assert_frame_equal(records["plain"], records["sparse"])


def test_pretrained_and_runs_takes_seed_42_shipped_and_the_others_from_run_folders(tiny_runs):
    from experiments.core.trained import network_source
    cfg = load_experiment(CONFIG, ["source=pretrained+runs", f"runs={tiny_runs}"]).jobs[
        "sparse_cnn2"]
    assert str(network_source(cfg, "sparse_cnn2", 42)[0]) == "models/pretrained/sparse_cnn2.pt"
    (tiny_runs / "sparse_cnn2" / "seed-43").mkdir(exist_ok=True)
    for name in ("config.yaml", "checkpoint.pt"):
        (tiny_runs / "sparse_cnn2" / "seed-43" / name).write_bytes(
            (tiny_runs / "sparse_cnn2" / "seed-42" / name).read_bytes())
    weights, config = network_source(cfg, "sparse_cnn2", 43)
    assert weights == tiny_runs / "sparse_cnn2" / "seed-43" / "checkpoint.pt"
    assert config == tiny_runs / "sparse_cnn2" / "seed-43" / "config.yaml"


def test_paired_comparisons_use_only_the_attacks_both_networks_ran():
    """A step network b has not reached yet is left out of both worst cases; one b skipped as
    not its kind (a surrogate gradient without k-winners) keeps a's rows."""
    from experiments.robust.adversarial_views import comparable
    from experiments.robust.checks import NOT_ITS_KIND

    def row(net, attack, correct):
        return {"network": net, "seed": 42, "image": 0, "eps": 0.1, "attack": attack,
                "role": "attack", "correct": correct}

    rows = pd.DataFrame([row("a", "pgd", 1), row("a", "soft", 0), row("a", "square", 0),
                         row("b", "pgd", 1)])
    steps = pd.DataFrame([{"network": "a", "seed": 42, "attack": n, "base": n, "skipped": None}
                          for n in ("pgd", "soft", "square")]
                         + [{"network": "b", "seed": 42, "attack": "pgd", "base": "pgd",
                             "skipped": None},
                            {"network": "b", "seed": 42, "attack": "soft", "base": "soft",
                             "skipped": NOT_ITS_KIND}])
    kept = comparable(rows, steps, "a", "b", 42, "eps")
    assert sorted(zip(kept.network, kept.attack)) == [("a", "pgd"), ("a", "soft"), ("b", "pgd")]
    assert worst(kept).loc[("a", 42, 0.1, 0)] == 0  # soft still counts against a
    assert comparable(rows[rows.network == "a"], steps, "a", "b", 42, "eps") is None


def test_minimum_norm_table_says_not_run_for_a_norm_a_network_lacks():
    from experiments.robust.adversarial_views import min_norm_markdown

    frame = pd.DataFrame([
        {"network": "a", "label": "A", "norm": "l2", "median": 1.5, "q25": 1.0, "q75": 2.0},
        {"network": "a", "label": "A", "norm": "linf", "median": 0.1, "q25": 0.05, "q75": 0.2},
        {"network": "b", "label": "B", "norm": "l2", "median": 1.2, "q25": 1.1, "q75": 1.3}])
    table = min_norm_markdown(frame).set_index("network")
    assert table.loc["A", "median L-inf (FAB-T) [quartiles]"] == "0.100 [0.050, 0.200]"
    assert table.loc["B", "median L-inf (FAB-T) [quartiles]"] == "not run"
    assert table.loc["B", "median L2 (DDN) [quartiles]"] == "1.200 [1.100, 1.300]"
