"""The attack harness: attacks against closed forms, the threat model bit for bit, networks left
untouched, surrogate gradients on the backward pass only, and the adversarial study end to end."""

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.cli import load_experiment, run_experiment
from experiments.robust import adversarial_report, autoattack
from experiments.robust.attacks import fgsm, margin, pgd, square, square_fraction
from experiments.robust.checks import all_checks
from experiments.robust.harness import PixelModel, bounds, check_constraints, frozen, project
from models import (ConvLayerConfig, HiddenLayerConfig, NetworkConfig, build_network,
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
        for mode in (None, "identity", "relu"):
            with surrogate_gradients(net, mode):
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
    assert names[:2] == ["clean", "fgsm"] and "transfer" in names and "pgd_ce@6" in names
    assert records[-1]["skipped"].startswith("pyautoattack is not installed")
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
    assert len(set(checks.check)) == 8 and set(checks.network) == {"sparse_cnn2", "dense_cnn2"}
    assert "pyautoattack is not installed" in (exp / "checks.md").read_text()
    # an interrupted job resumes at its first unfinished step and changes nothing before it
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines[:3]))
    kept = (run / "attacks" / "fgsm.csv").stat().st_mtime_ns
    smoke(tiny_runs, mnist_root, tmp_path)
    assert "0 already done, 2 to run" in capsys.readouterr().out
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["attack"] for r in again] == names
    assert (run / "attacks" / "fgsm.csv").stat().st_mtime_ns == kept
    if autoattack.installed():
        assert "skipped" not in again[-1] and (run / "done").is_file()
        adversarial_report.write_report(exp)
        assert len(set(pd.read_csv(exp / "checks.csv").check)) == 9


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
    steps = pd.DataFrame([{"network": "n", "results": [{"eps": 0.1, "max_perturbation": 0.1}]}])
    checks = all_checks(pd.DataFrame(rows), steps).set_index("check")
    row = checks.loc["white-box <= gradient-free, per image"]
    assert not row.passed and row.detail.startswith("1 of 3 (image, eps) pairs")
    assert checks.loc["every x' within eps and the [0, 1] box"].passed


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
    ("attacks.square.surrogate=identity", "square.surrogate: the Square attack uses no gradient"),
    ("convergence.attacks=[fgsm]", "convergence.attacks: 'fgsm' is not a PGD attack"),
    ("eps=[0.1,1.5]", "eps: must be a non-empty list in (0, 1)"),
    ("data.name=gsc", "data.name: these studies perturb MNIST pixels")])
def test_a_wrong_setting_stops_before_any_work_naming_its_key(override, message):
    from experiments.core.config import ConfigError
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_experiment(CONFIG, [override])


def test_an_override_of_one_attack_keeps_the_others():
    cfg = load_experiment(CONFIG, ["attacks.square.loss=ce"]).jobs["sparse_cnn2"]
    assert len(cfg.attacks) == 8 and cfg.attacks["square"].loss == "ce"
    assert cfg.attacks["pgd_ce_relu"].surrogate == "relu"
