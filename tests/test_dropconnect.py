"""DropConnect: a fresh mask per training forward pass, kept weights scaled by 1/(1-p), the plain
layer in eval mode; and the config keys that build it."""

import math

import pytest
import torch
from torch import nn

from models import (ConvLayerConfig, DropConnect, HiddenLayerConfig, NetworkConfig,
                    build_network)


def dropped_pattern(layer, x):
    """(the weight positions whose gradient is zero, the weight gradient) of one step."""
    layer.zero_grad()
    layer(x).sum().backward()
    grad = layer.module.weight.grad
    return grad == 0, grad


def test_dropped_fraction_is_p_within_binomial_error_and_kept_weights_are_scaled():
    torch.manual_seed(0)
    p, layer = 0.7, DropConnect(nn.Linear(400, 300), 0.7)
    x = torch.ones(5, 400)
    dropped, grad = dropped_pattern(layer, x)
    n = dropped.numel()
    assert abs(dropped.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    # d/dW of sum(x W'^T) with x = 1 is 5 * M / (1 - p): exactly that at the kept weights
    assert torch.allclose(grad[~dropped], torch.full_like(grad[~dropped], 5 / (1 - p)))


def test_mask_changes_from_one_call_to_the_next_and_gradients_reach_kept_weights_only():
    torch.manual_seed(1)
    layer = DropConnect(nn.Conv2d(3, 8, 5), 0.5)
    x = torch.randn(4, 3, 12, 12)
    first, _ = dropped_pattern(layer, x)
    second, _ = dropped_pattern(layer, x)
    assert not torch.equal(first, second)
    weight = layer.module.weight.detach()
    torch.manual_seed(7)
    expected = nn.functional.conv2d(x, layer.sample_weight(), layer.module.bias)
    torch.manual_seed(7)
    assert torch.allclose(layer(x), expected)  # forward uses exactly W * M / (1 - p)
    assert torch.equal(layer.module.weight.detach(), weight)  # the weight itself is untouched


def test_eval_mode_is_the_plain_layer_and_state_dict_round_trips():
    torch.manual_seed(2)
    linear = nn.Linear(20, 10)
    layer = DropConnect(linear, 0.7).eval()
    x = torch.randn(6, 20)
    assert torch.equal(layer(x), linear(x))
    copy = DropConnect(nn.Linear(20, 10), 0.7).eval()
    copy.load_state_dict(layer.state_dict())
    assert list(layer.state_dict()) == ["module.weight", "module.bias"]
    assert torch.equal(copy(x), layer(x))


def test_p_zero_is_the_plain_layer_in_training_too():
    linear = nn.Linear(5, 3)
    x = torch.randn(2, 5)
    assert torch.equal(DropConnect(linear, 0.0).train()(x), linear(x))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_probability_is_refused(p):
    with pytest.raises(ValueError, match="p must be in"):
        DropConnect(nn.Linear(2, 2), p)


def test_config_keys_build_dropconnect_and_dropout_where_asked():
    cfg = NetworkConfig(conv=[ConvLayerConfig(8, dropconnect=0.2)],
                        hidden=HiddenLayerConfig(30, 5, dropconnect=0.7), dropout=0.5)
    net = build_network(cfg)
    assert isinstance(net.conv1, DropConnect) and net.conv1.p == 0.2
    assert isinstance(net.linear, DropConnect) and net.linear.p == 0.7
    assert isinstance(net.dropout, nn.Dropout) and net.dropout.p == 0.5
    names = list(dict(net.named_children()))
    assert names.index("dropout") == names.index("linear") + 1  # before the k-winners


@pytest.mark.parametrize("hidden, conv, message", [
    (HiddenLayerConfig(30, density=0.3, dropconnect=0.7), ConvLayerConfig(8), "not both"),
    (HiddenLayerConfig(30, dropconnect=1.0), ConvLayerConfig(8), r"hidden\.dropconnect"),
    (HiddenLayerConfig(30), ConvLayerConfig(8, dropconnect=-0.5), r"conv\[0\]\.dropconnect"),
])
def test_impossible_dropconnect_configs_name_the_key(hidden, conv, message):
    with pytest.raises(ValueError, match=message):
        build_network(NetworkConfig(conv=[conv], hidden=hidden))


def test_per_sample_masks_differ_within_a_batch_and_keep_the_expectation():
    torch.manual_seed(2)
    layer = DropConnect(nn.Linear(64, 16), 0.5, per_sample=True)
    x = torch.randn(1, 64).repeat(400, 1)  # one input, 400 times in one batch
    y = layer(x)
    assert len({tuple(row.tolist()) for row in y}) == 400  # a mask per sample
    shared = DropConnect(nn.Linear(64, 16), 0.5)
    shared.load_state_dict(layer.state_dict())
    assert len({tuple(row.tolist()) for row in shared(x)}) == 1  # one mask per batch
    plain = layer.module(x[:1])
    spread = y.std(0) / math.sqrt(len(y))
    assert ((y.mean(0) - plain[0]).abs() < 5 * spread).all()  # E[y] is the plain layer's
    layer.eval()
    assert torch.equal(layer(x[:3]), layer.module(x[:3]))


def test_per_sample_gradients_reach_each_samples_kept_weights_only():
    torch.manual_seed(3)
    layer = DropConnect(nn.Linear(6, 4), 0.5, per_sample=True)
    x = torch.zeros(2, 6)
    x[0, 0] = 1.0  # sample 0 reads input 0 only, sample 1 input 5 only
    x[1, 5] = 1.0
    layer(x).sum().backward()
    grad = layer.module.weight.grad
    assert (grad[:, 1:5] == 0).all()
    assert set(grad[:, 0].tolist()) <= {0.0, 2.0} and set(grad[:, 5].tolist()) <= {0.0, 2.0}


def test_per_sample_masks_are_for_linear_layers_and_need_a_probability():
    with pytest.raises(ValueError, match="nn.Linear only"):
        DropConnect(nn.Conv2d(1, 2, 3), 0.5, per_sample=True)
    cfg = NetworkConfig(hidden=HiddenLayerConfig(8, dropconnect_per_sample=True))
    with pytest.raises(ValueError, match="dropconnect_per_sample: needs hidden.dropconnect"):
        build_network(cfg)
    net = build_network(NetworkConfig(hidden=HiddenLayerConfig(8, dropconnect=0.3,
                                                               dropconnect_per_sample=True)))
    assert net.linear.per_sample and net.linear.p == 0.3
