"""A SeedBatch of S seeds computes, trains and saves exactly what the S networks do alone."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import models.backend as backend_module
from experiments.train.loop import make_optimizer
from models import (ConvLayerConfig, HiddenLayerConfig, KWinners, KWinners2d, NetworkConfig,
                    build_network, update_boost_strength)
from models.seed_batch import (SeedBatch, SeedKWinners, SeedKWinners2d, build_seed_batch,
                               seed_losses)

SEEDS = [42, 43, 44]
DENSE = NetworkConfig(conv=[ConvLayerConfig(4)], hidden=HiddenLayerConfig(24))
SPARSE = NetworkConfig(conv=[ConvLayerConfig(4, k=60), ConvLayerConfig(6, k=20)],
                       hidden=HiddenLayerConfig(24, k=6, density=0.5), k_inference_factor=1.5,
                       boost_strength=1.5, boost_strength_factor=0.85, duty_cycle_period=12)
TRAIN = SimpleNamespace(lr=0.05, momentum=0.9, weight_decay=1e-3)


@pytest.fixture(params=["auto", "torch"])
def backend(request, monkeypatch):
    """The numba kernels (CPU) and the torch ops (what a GPU runs) must both agree."""
    monkeypatch.setattr(backend_module, "BACKEND", request.param)
    return request.param


def networks_alone(cfg):
    """Each seed's network as run_job builds it."""
    nets = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        nets.append(build_network(cfg))
    return nets


def record_winners(model, kinds):
    """Outputs of every k-winners layer of ``model`` on its next forward pass, in order."""
    outputs = []
    for m in model.modules():
        if isinstance(m, kinds):
            m.register_forward_hook(lambda mod, args, out: outputs.append(out.detach()))
    return outputs


def seed_slice(out, s, seeds):
    """Seed s's part of a SeedBatch layer output: (B, S*C, H, W) or (S, B, n)."""
    if out.dim() == 4:
        return out.view(out.shape[0], seeds, -1, *out.shape[2:])[:, s]
    return out[s]


@pytest.mark.parametrize("cfg", [DENSE, SPARSE], ids=["dense", "sparse"])
def test_eval_outputs_and_winners_equal_each_network_alone(cfg, backend):
    nets, batch = networks_alone(cfg), build_seed_batch(cfg, SEEDS).eval()
    x = torch.randn(len(SEEDS), 5, 1, 28, 28)
    batch_winners = record_winners(batch, (SeedKWinners, SeedKWinners2d))
    with torch.inference_mode():
        out = batch(x)
    assert out.shape == (len(SEEDS), 5, 10)
    for s, net in enumerate(nets):
        alone_winners = record_winners(net.eval(), (KWinners, KWinners2d))
        with torch.inference_mode():
            torch.testing.assert_close(out[s], net(x[s]), atol=1e-5, rtol=0)
        assert len(alone_winners) == len(batch_winners) == (3 if cfg is SPARSE else 0)
        for alone, batched in zip(alone_winners, batch_winners):
            mine = seed_slice(batched, s, len(SEEDS))
            assert torch.equal(mine != 0, alone != 0)  # the same winners
            torch.testing.assert_close(mine, alone, atol=1e-5, rtol=0)


def train_alone(net, batches):
    optimizer = make_optimizer(net, TRAIN)
    net.train()
    losses = []
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.nll_loss(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, optimizer


def train_batched(batch, xs, ys):
    optimizer = make_optimizer(batch, TRAIN)
    batch.train()
    losses = []
    for x, y in zip(xs, ys):  # (S, B, 1, 28, 28), (S, B)
        optimizer.zero_grad(set_to_none=True)
        loss = seed_losses(batch(x), y)
        loss.sum().backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses, 1), optimizer  # (S, steps)


@pytest.mark.parametrize("cfg, batch_size", [(SPARSE, 4), (SPARSE, 16), (DENSE, 4)],
                         ids=["sparse-b4", "sparse-b16", "dense-b4"])
def test_training_matches_each_seed_trained_alone(cfg, batch_size, backend):
    steps, seeds = 5, len(SEEDS)
    torch.manual_seed(0)
    xs = torch.randn(steps, seeds, batch_size, 1, 28, 28)
    ys = torch.randint(0, 10, (steps, seeds, batch_size))
    batch = build_seed_batch(cfg, SEEDS)
    batch_losses, batch_opt = train_batched(batch, xs, ys)
    batch.update_boost_strength()
    states, opt_states = batch.state_dicts(), batch.seed_optimizer_states(batch_opt)
    for s, net in enumerate(networks_alone(cfg)):
        losses, optimizer = train_alone(net, zip(xs[:, s], ys[:, s]))
        update_boost_strength(net)
        torch.testing.assert_close(batch_losses[s], torch.tensor(losses), atol=1e-5, rtol=0)
        net_state = net.state_dict()
        for key, value in net_state.items():
            torch.testing.assert_close(states[s][key], value, atol=1e-5, rtol=0, msg=key)
        if cfg is SPARSE:
            assert net_state["kwinners.samples_seen"].item() == steps * batch_size
            assert torch.equal(states[s]["linear.module.weight"] * (1 - net.linear.mask),
                               torch.zeros_like(net.linear.mask))  # SGD kept the zeros
        for i, entry in optimizer.state_dict()["state"].items():
            torch.testing.assert_close(opt_states[s]["state"][i]["momentum_buffer"],
                                       entry["momentum_buffer"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cfg", [DENSE, SPARSE], ids=["dense", "sparse"])
def test_unstack_gives_back_the_same_networks(cfg):
    nets = networks_alone(cfg)
    batch = SeedBatch(cfg, nets)
    rng = torch.get_rng_state()
    unstacked = batch.unstack()
    assert torch.equal(torch.get_rng_state(), rng)  # unstack draws nothing
    for net, again, state in zip(nets, unstacked, batch.state_dicts()):
        original = net.state_dict()
        assert list(state) == list(original)  # the same keys in the same order
        for key, value in original.items():
            assert torch.equal(state[key], value) and state[key].dtype == value.dtype, key
            assert torch.equal(again.state_dict()[key], value), key
    restacked = SeedBatch(cfg, unstacked).state_dict()
    for key, value in batch.state_dict().items():
        assert torch.equal(restacked[key], value), key


@pytest.mark.parametrize("key, change", [
    ("batch_norm", {"batch_norm": True}),
    ("dropout", {"dropout": 0.5}),
    (r"conv\[0\].dropconnect", {"conv": [ConvLayerConfig(4, dropconnect=0.3)]}),
    ("hidden.dropconnect", {"hidden": HiddenLayerConfig(24, dropconnect=0.3)}),
])
def test_unsupported_keys_raise_naming_the_key(key, change):
    cfg = dataclasses.replace(DENSE, **change)
    with pytest.raises(ValueError, match=key):
        build_seed_batch(cfg, SEEDS[:2])


def test_input_of_the_wrong_seed_count_raises():
    batch = build_seed_batch(DENSE, SEEDS)
    with pytest.raises(ValueError, match="S=3"):
        batch(torch.randn(2, 4, 1, 28, 28))
