"""Invariants of k-winners (docs/paper_spec.md section 1.1 and 1.2), not just shapes.

Every test runs twice: with the numba CPU kernel (backend "auto", the default on CPU) and with
the torch ops that serve every other device (backend "torch").
"""

import math

import pytest
import torch

from models import KWinners, KWinners2d, backend


@pytest.fixture(autouse=True, params=["auto", "torch"])
def each_backend(request, monkeypatch):
    monkeypatch.setattr(backend, "BACKEND", request.param)
    return request.param


def active_per_sample(y):
    return (y != 0).flatten(1).sum(1)


@pytest.mark.parametrize("train", [True, False])
def test_exactly_k_winners_per_sample(train):
    layer = KWinners(50, 7, k_inference_factor=1.5, boost_strength=1.0).train(train)
    y = layer(torch.randn(16, 50))
    expected = 7 if train else round(7 * 1.5)
    assert active_per_sample(y).tolist() == [expected] * 16


def test_exactly_k_winners_2d_global_over_chw():
    layer = KWinners2d(3, 20, boost_strength=1.0)
    y = layer(torch.randn(8, 3, 6, 6))
    assert active_per_sample(y).tolist() == [20] * 8
    # global selection: a sample whose channel 0 holds all large values gives 20 winners there
    x = torch.randn(1, 3, 6, 6)
    x[0, 0] += 100.0
    assert int((layer(x)[0, 0] != 0).sum()) == 20


def test_raw_unboosted_values_at_winners_and_zero_elsewhere():
    layer = KWinners(10, 3, boost_strength=2.0)
    layer.duty_cycle.copy_(torch.linspace(0.0, 0.9, 10))
    x = torch.randn(4, 10)
    y = layer(x)
    winners = y != 0
    assert torch.equal(y[winners], x[winners])  # raw x, not x * boost
    assert torch.all(y[~winners] == 0)


def test_negative_winner_passes_through():
    layer = KWinners(5, 3)
    x = torch.tensor([[3.0, -1.0, -2.0, -5.0, -4.0]])
    assert torch.equal(layer(x), torch.tensor([[3.0, -1.0, -2.0, 0.0, 0.0]]))


def test_boosting_changes_the_winner_set_as_the_formula_predicts():
    n, k, beta = 4, 1, 2.0
    layer = KWinners(n, k, boost_strength=beta).eval()
    layer.duty_cycle.copy_(torch.tensor([0.9, 0.0, 0.5, 0.5]))
    x = torch.tensor([[1.0, 0.5, 0.2, 0.1]])
    boost = torch.exp(beta * (k / n - layer.duty_cycle))  # [0.264, 1.649, 0.779, 0.779]
    assert (x * boost).argmax().item() == 1  # boosted order differs from the raw order
    y = layer(x)
    assert torch.nonzero(y[0]).flatten().tolist() == [1] and y[0, 1] == 0.5
    layer.boost_strength.zero_()  # beta = 0: no boosting, raw winner
    assert torch.nonzero(layer(x)[0]).flatten().tolist() == [0]


def test_boost_2d_is_per_channel_with_n_equal_chw():
    layer = KWinners2d(2, 1, boost_strength=3.0, n=2 * 2 * 2).eval()
    layer.duty_cycle.copy_(torch.tensor([1.0, 0.0]))
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0, 0, 0], x[0, 1, 1, 1] = 1.0, 0.2
    # b_0 = exp(3 * (1/8 - 1)) = 0.072, b_1 = exp(3/8) = 1.455: 0.072 < 0.291, channel 1 wins
    y = layer(x)
    assert y[0, 1, 1, 1] == 0.2 and int((y != 0).sum()) == 1


@pytest.mark.parametrize("make, shape", [(lambda: KWinners(30, 4, boost_strength=1.5), (6, 30)),
                                         (lambda: KWinners2d(3, 9, boost_strength=1.5),
                                          (6, 3, 4, 4))])
def test_gradient_reaches_winners_only(make, shape):
    layer = make()
    x = torch.randn(*shape, requires_grad=True)
    y = layer(x)
    weights = torch.randn(*shape)
    (y * weights).sum().backward()
    winners = y.detach() != 0
    assert torch.equal(x.grad[winners], weights[winners])  # straight-through: gradient 1
    assert torch.all(x.grad[~winners] == 0)
    assert layer.duty_cycle.grad is None and not layer.boost_strength.requires_grad


def spec_duty_cycle(batches, period=1000):
    """The spec's arithmetic, written out: d <- (d * (p - B) + count) / p, p = min(P, t)."""
    d, t = None, 0
    for count, batch in batches:
        d = torch.zeros_like(count) if d is None else d
        t += batch
        p = min(period, t)
        d = (d * (p - batch) + count) / p
    return d


def test_duty_cycle_1d_matches_spec_running_mean_then_ema():
    torch.manual_seed(0)
    layer = KWinners(20, 5, boost_strength=1.0, duty_cycle_period=12)
    batches = []
    for _ in range(6):  # 6 batches of 4 samples: t = 4, 8, 12 (running mean), then EMA
        y = layer(torch.randn(4, 20))
        batches.append(((y > 0).sum(0).float(), 4))
    assert torch.allclose(layer.duty_cycle, spec_duty_cycle(batches, 12), atol=1e-6)
    assert int(layer.samples_seen) == 24


def test_duty_cycle_first_batches_are_the_exact_mean():
    torch.manual_seed(1)
    layer = KWinners(10, 3)
    outputs = [layer(torch.randn(4, 10)) for _ in range(3)]
    mean = torch.cat(outputs).gt(0).float().mean(0)
    assert torch.allclose(layer.duty_cycle, mean, atol=1e-6)


def test_duty_cycle_2d_counts_positive_entries_per_channel_over_hw():
    torch.manual_seed(2)
    layer = KWinners2d(4, 12, boost_strength=1.0, duty_cycle_period=10)
    batches = []
    for _ in range(5):  # t = 3, 6, 9, 10 (period reached), 10
        y = layer(torch.randn(3, 4, 3, 3))
        batches.append(((y > 0).sum(dim=(0, 2, 3)).float() / 9, 3))
    assert torch.allclose(layer.duty_cycle, spec_duty_cycle(batches, 10), atol=1e-6)


def test_eval_uses_rounded_k_and_leaves_duty_cycles_alone():
    layer = KWinners2d(4, 10, k_inference_factor=1.35, boost_strength=1.0, n=4 * 5 * 5)
    layer(torch.randn(2, 4, 5, 5))  # one training batch
    duty, seen = layer.duty_cycle.clone(), int(layer.samples_seen)
    layer.eval()
    y = layer(torch.randn(7, 4, 5, 5))
    assert active_per_sample(y).tolist() == [round(10 * 1.35)] * 7  # 13.5 -> 14
    assert torch.equal(layer.duty_cycle, duty) and int(layer.samples_seen) == seen
    assert KWinners(10, 8, k_inference_factor=1.5).k_eval == 10  # capped at n


def test_boost_strength_decays_by_the_factor_per_call():
    layer = KWinners(10, 2, boost_strength=1.5, boost_strength_factor=0.85)
    for epoch in range(4):
        assert math.isclose(layer.boost_strength.item(), 1.5 * 0.85 ** epoch, rel_tol=1e-6)
        layer.update_boost_strength()


def test_state_dict_round_trip_restores_duty_cycles_and_boost():
    layer = KWinners2d(3, 5, boost_strength=1.5, boost_strength_factor=0.9, n=3 * 4 * 4)
    for _ in range(3):
        layer(torch.randn(5, 3, 4, 4))
    layer.update_boost_strength()
    state = layer.state_dict()
    assert set(state) == {"boost_strength", "duty_cycle", "samples_seen"}
    fresh = KWinners2d(3, 5, boost_strength=1.5, boost_strength_factor=0.9, n=3 * 4 * 4)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.duty_cycle, layer.duty_cycle)
    assert fresh.boost_strength.item() == pytest.approx(1.35)
    assert int(fresh.samples_seen) == 15
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(fresh.eval()(x), layer.eval()(x))


def test_invalid_k_is_rejected():
    with pytest.raises(ValueError, match="k must be in 1..10"):
        KWinners(10, 11)
    with pytest.raises(ValueError, match="k must be in"):
        KWinners2d(2, 100)(torch.randn(1, 2, 3, 3))


@pytest.mark.parametrize("mode", ["identity", "relu"])
def test_surrogate_gradients_change_the_backward_pass_only(mode):
    from models import surrogate_gradients
    torch.manual_seed(0)
    layer = KWinners2d(4, 20, k_inference_factor=1.5, boost_strength=1.5).eval()
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    exact = layer(x)
    (exact_grad,) = torch.autograd.grad(exact.sum(), x)
    with surrogate_gradients(layer, mode):
        out = layer(x)
        (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(out, exact)  # the forward pass is untouched
    expected = torch.ones_like(x) if mode == "identity" else (x > 0).float()
    assert torch.equal(grad, expected) and not torch.equal(grad, exact_grad)
    assert layer.surrogate is None  # restored after the block
    (again,) = torch.autograd.grad(layer(x).sum(), x)
    assert torch.equal(again, exact_grad)


def test_soft_surrogate_keeps_the_forward_pass_and_spans_exact_to_straight_through():
    from models import surrogate_gradients
    torch.manual_seed(0)
    layer = KWinners2d(4, 20, k_inference_factor=1.5, boost_strength=1.5).eval()
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    exact = layer(x)
    (exact_grad,) = torch.autograd.grad(exact.sum(), x)
    grads = {}
    for temperature in (1e-4, 1.0, 1e4):
        with surrogate_gradients(layer, "soft", temperature):
            out = layer(x)
            (grads[temperature],) = torch.autograd.grad(out.sum(), x)
        assert torch.equal(out, exact)
    assert torch.allclose(grads[1e-4], exact_grad, atol=1e-3)  # cold: the winners' mask
    assert torch.allclose(grads[1e4], torch.full_like(x, 0.5), atol=1e-2)  # hot: x / 2
    assert not torch.allclose(grads[1.0], exact_grad, atol=1e-2)
    assert layer.surrogate is None and layer.surrogate_temperature is None


@pytest.mark.parametrize("mode, temperature", [("soft", None), ("identity", 0.5), ("soft", 0.0)])
def test_a_temperature_goes_with_the_soft_surrogate_only(mode, temperature):
    from models import surrogate_gradients
    with pytest.raises(ValueError, match="temperature"):
        with surrogate_gradients(KWinners(10, 3), mode, temperature):
            pass
