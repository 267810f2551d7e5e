"""Invariants of fixed sparse weights (docs/paper_spec.md section 1.3)."""

import pytest
import torch
from torch import nn

from models import SparseWeights, rezero_weights


def zeros_per_unit(layer):
    return (layer.module.weight.detach() == 0).flatten(1).sum(1)


@pytest.mark.parametrize("module, fan_in", [(nn.Linear(1024, 70), 1024),
                                            (nn.Conv2d(8, 6, 5), 8 * 5 * 5)])
def test_exact_zero_count_per_output_unit(module, fan_in):
    layer = SparseWeights(module, density=0.3)
    zeros = round(0.7 * fan_in)
    assert zeros_per_unit(layer).tolist() == [zeros] * module.weight.shape[0]
    assert layer.mask.shape == module.weight.shape
    assert torch.equal(layer.mask.flatten(1).sum(1), torch.full((module.weight.shape[0],),
                                                                float(fan_in - zeros)))


@pytest.mark.parametrize("module, shape", [(nn.Linear(40, 30), (8, 40)),
                                           (nn.Conv2d(3, 5, 3), (8, 3, 7, 7))])
def test_the_bias_is_never_masked(module, shape):
    """The bias's gradient is the one the unwrapped layer gives with the same (masked)
    weights: non-zero at every unit, untouched by the weight's mask."""
    torch.manual_seed(0)
    layer = SparseWeights(module, density=0.1)
    x = torch.randn(*shape)
    layer(x).pow(2).sum().backward()
    bias = module.bias.detach().clone().requires_grad_()
    plain = torch.func.functional_call(module, {"weight": module.weight.detach(), "bias": bias},
                                       (x,))
    plain.pow(2).sum().backward()
    assert torch.all(module.bias.grad != 0)
    assert torch.equal(module.bias.grad, bias.grad)


def test_paper_example_307_of_1024_nonzero():
    layer = SparseWeights(nn.Linear(1024, 700), density=0.3)
    assert int(layer.mask.sum()) == 700 * 307


def test_masks_differ_between_units_and_seeds():
    torch.manual_seed(0)
    a = SparseWeights(nn.Linear(100, 4), 0.5).mask
    torch.manual_seed(1)
    b = SparseWeights(nn.Linear(100, 4), 0.5).mask
    assert not torch.equal(a, b) and not torch.equal(a[0], a[1])


@pytest.mark.parametrize("module, shape", [(nn.Linear(40, 30), (8, 40)),
                                           (nn.Conv2d(3, 5, 3), (8, 3, 7, 7))])
def test_mask_survives_sgd_with_momentum_and_weight_decay(module, shape):
    torch.manual_seed(0)
    layer = SparseWeights(module, density=0.25)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    before = module.weight.detach().clone()
    for _ in range(20):  # no rezero call: the gradient mask alone must keep the zeros
        optimizer.zero_grad()
        layer(torch.randn(*shape)).pow(2).sum().backward()
        optimizer.step()
    masked = layer.mask == 0
    assert torch.all(module.weight[masked] == 0)
    assert torch.all(optimizer.state[module.weight]["momentum_buffer"][masked] == 0)
    assert not torch.equal(module.weight[~masked], before[~masked])  # the rest did learn


def test_mask_survives_adamw():
    layer = SparseWeights(nn.Linear(20, 10), density=0.4)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        layer(torch.randn(4, 20)).sum().backward()
        optimizer.step()
    assert torch.all(layer.module.weight[layer.mask == 0] == 0)


def test_rezero_weights_restores_zeros_after_a_direct_edit():
    model = nn.Sequential(SparseWeights(nn.Linear(10, 5), 0.5))
    with torch.no_grad():
        model[0].module.weight.fill_(1.0)
    rezero_weights(model)
    assert torch.equal(model[0].module.weight, model[0].mask)


def test_state_dict_round_trip_restores_the_mask():
    torch.manual_seed(3)
    layer = SparseWeights(nn.Linear(30, 6), density=0.3)
    torch.manual_seed(4)
    other = SparseWeights(nn.Linear(30, 6), density=0.3)
    assert not torch.equal(layer.mask, other.mask)
    other.load_state_dict(layer.state_dict())
    assert torch.equal(other.mask, layer.mask)
    assert torch.equal(other.module.weight, layer.module.weight)
    x = torch.randn(2, 30)
    assert torch.equal(other(x), layer(x))


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5])
def test_density_outside_unit_interval_is_rejected(density):
    with pytest.raises(ValueError, match="density"):
        SparseWeights(nn.Linear(4, 4), density)
