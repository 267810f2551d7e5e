"""The shipped seed-42 weights: stored compactly, loaded exactly, and scoring on the real MNIST
test set exactly what their training run recorded for the last epoch."""

from pathlib import Path

import pytest
import torch

from data import DataConfig
from data.mnist import MNISTDataset
from experiments.core.records import read_jsonl
from experiments.train.sweep import NoiseSweep
from models import (ConvLayerConfig, HiddenLayerConfig, NetworkConfig, SparseWeights,
                    build_network, count_parameters, load_pretrained, pretrained_info)
from models.pretrained import FOLDER, available, compact_state, full_state

REPO = Path(__file__).resolve().parent.parent
NETWORKS = ["dense_cnn1", "dense_cnn2", "sparse_cnn1", "sparse_cnn2", "dense_cnn2_sp3",
            "sparse_cnn2_d3", "sparse_cnn2_w1", "sparse_cnn2_dsw"]


def test_compact_state_round_trips_exactly_and_stores_only_the_nonzeros():
    torch.manual_seed(3)
    cfg = NetworkConfig(conv=[ConvLayerConfig(4, 50)], hidden=HiddenLayerConfig(20, 5, 0.3),
                        k_inference_factor=1.5, boost_strength=1.5)
    model = build_network(cfg)
    model.kwinners.duty_cycle.uniform_()
    compact = compact_state(model)
    entry = compact["linear.module.weight"]
    assert entry["values"].numel() == int(model.linear.mask.sum()) == 20 * 173  # 30% of 576
    assert "linear.mask" not in compact
    full = full_state(compact)
    assert full.keys() == model.state_dict().keys()
    assert all(torch.equal(full[k], v) for k, v in model.state_dict().items())


def test_every_paper_network_ships_within_40_mb():
    assert available() == sorted(NETWORKS)
    sizes = {name: (FOLDER / f"{name}.pt").stat().st_size for name in NETWORKS}
    assert sum(sizes.values()) < 40e6


@pytest.mark.parametrize("name", NETWORKS)
def test_load_pretrained_gives_the_trained_network_in_eval_mode(name):
    state = torch.random.get_rng_state()
    net = load_pretrained(name)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert not net.training
    info = pretrained_info(name)
    assert info["network"] == name and info["seed"] == 42
    assert info["record"] == read_jsonl(REPO / info["run"] / "metrics.jsonl")[-1]
    for module in net.modules():
        if isinstance(module, SparseWeights):  # the masked weights are zero
            assert not module.module.weight[module.mask == 0].any()
    fresh = load_pretrained(name, pretrained=False)
    assert count_parameters(fresh) == count_parameters(net)


def recorded_and_measured(name, mnist_root, levels=None):
    """(the run's last-epoch correct counts, the shipped network's) on the real test set,
    with the noise drawn as the run drew it, on one thread as the run ran."""
    info = pretrained_info(name)
    dataset = MNISTDataset(DataConfig(root=str(mnist_root)))
    levels = info["noise_levels"] if levels is None else levels
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sweep = NoiseSweep(dataset, levels, info["seed"], torch.device("cpu"))
        measured = sweep.run(load_pretrained(name), info["test_batch_size"], torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    recorded = {k: info["record"]["noise_correct"][k] for k in measured}
    return recorded, measured


def test_sparse_cnn2_reproduces_its_recorded_clean_test_accuracy(mnist_root):
    recorded, measured = recorded_and_measured("sparse_cnn2", mnist_root, levels=[0.0])
    assert measured == recorded


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_reproduces_its_recorded_clean_and_noise_scores(name, mnist_root):
    recorded, measured = recorded_and_measured(name, mnist_root)
    assert measured == recorded  # all 11 levels: the clean count and the noise score
