"""Every paper network, built from its config: shapes, sparsity and parameter counts."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from experiments.cli import load_experiment
from models import (KWinners, KWinners2d, SparseWeights, build_network, count_parameters,
                    network_config)

MNIST = load_experiment("configs/mnist_table1.yaml")
GSC = load_experiment("configs/gsc_table2.yaml")

# (total, non-zero), biases included. MNIST: docs/paper_spec.md section 2. GSC, by hand: conv1
# 64*25+64 = 1,664; conv2 64*64*25+64 = 102,464; hidden fan-in 64*5*5 = 1,600; output 12.
COUNTS = {
    ("mnist", "dense_cnn1"): (4_331_790, 4_331_790),
    ("mnist", "dense_cnn2"): (514_320, 514_320),
    ("mnist", "sparse_cnn1"): (650_440, 196_840),
    ("mnist", "sparse_cnn2"): (776_606, 274_706),
    ("mnist", "dense_cnn2_sp3"): (367_020, 131_820),
    ("mnist", "sparse_cnn2_d3"): (1_087_106, 1_087_106),
    ("mnist", "sparse_cnn2_w1"): (776_606, 776_606),
    ("mnist", "sparse_cnn2_dsw"): (1_087_106, 370_106),
    # dense: 1,664 + 102,464 + (1,600*1,000 + 1,000) + (1,000*12 + 12)
    ("gsc", "dense_cnn2"): (1_717_140, 1_717_140),
    ("gsc", "dense_cnn2_dr05"): (1_717_140, 1_717_140),
    # density 0.4: 640 of 1,600 weights per hidden unit -> 641,000 in the hidden layer
    ("gsc", "sparse_cnn2"): (1_717_140, 757_140),
    # 1,500 units at density 0.1: 160 per unit -> 241,500; output 1,500*12 + 12 = 18,012
    ("gsc", "super_sparse_cnn2"): (2_523_640, 363_640),
}


def job(dataset, name):
    return (MNIST if dataset == "mnist" else GSC).jobs[name]


def test_every_paper_network_has_a_config():
    assert set(MNIST.run) == {n for d, n in COUNTS if d == "mnist"}
    assert set(GSC.run) == {n for d, n in COUNTS if d == "gsc"}


@pytest.mark.parametrize("dataset, name", sorted(COUNTS))
def test_parameter_counts_match_the_paper(dataset, name):
    torch.manual_seed(0)
    assert count_parameters(build_network(job(dataset, name).model)) == COUNTS[dataset, name]


@pytest.mark.parametrize("dataset, name", sorted(COUNTS))
def test_one_backward_pass_reaches_every_parameter_but_the_masked_weights(dataset, name):
    """The loss's gradient reaches every parameter tensor (no layer cut off by k-winners,
    pooling or the CPU kernels), and is exactly zero at the weights SparseWeights masks."""
    cfg = job(dataset, name).model
    torch.manual_seed(0)
    model = build_network(cfg)
    out = model(torch.randn(8, *cfg.input_shape))
    assert out.shape == (8, cfg.num_classes)
    F.nll_loss(out, torch.arange(8) % cfg.num_classes).backward()
    masks = {f"{n}.module.weight": m.mask for n, m in model.named_modules()
             if isinstance(m, SparseWeights)}
    for key, p in model.named_parameters():
        mask = masks.get(key, torch.ones_like(p))
        assert p.grad[mask == 1].abs().sum() > 0, key
        assert not p.grad[mask == 0].any(), key


def test_sparse_cnn2_layers_match_the_paper():
    model = build_network(job("mnist", "sparse_cnn2").model)
    kw = [m for m in model.modules() if isinstance(m, (KWinners, KWinners2d))]
    assert [(m.k, m.n, m.k_eval) for m in kw] == [(400, 4608, 600), (300, 1024, 450),
                                                  (100, 700, 150)]
    assert all(m.boost_strength.item() == 1.5 and m.boost_strength_factor == 0.85 for m in kw)
    (sparse,) = [m for m in model.modules() if isinstance(m, SparseWeights)]
    assert sparse.module.weight.shape == (700, 1024) and sparse.density == 0.3


def test_dense_networks_have_no_sparse_layers_and_gsc_uses_batch_norm():
    dense = build_network(job("mnist", "dense_cnn2").model)
    assert not any(isinstance(m, (KWinners, KWinners2d, SparseWeights)) for m in dense.modules())
    gsc = build_network(job("gsc", "dense_cnn2_dr05").model)
    names = [name for name, _ in gsc.named_children()]
    assert names == ["conv1", "bn1", "pool1", "relu1", "conv2", "bn2", "pool2", "relu2",
                     "flatten", "linear", "bn", "dropout", "relu", "output", "log_softmax"]
    assert not gsc.bn1.affine and gsc.dropout.p == 0.5


@pytest.mark.parametrize("dataset, name", sorted(COUNTS))
def test_network_config_round_trips_every_paper_network(dataset, name):
    cfg = job(dataset, name).model
    assert network_config(dataclasses.asdict(cfg)) == cfg


@pytest.mark.parametrize("change, message", [
    (lambda d: d["hidden"].update(unitz=3), r"^hidden\.unitz: unknown key"),
    (lambda d: d["conv"][1].update(kk=3), r"^conv\[1\]\.kk: unknown key"),
    (lambda d: d.update(boost=1.0), r"^boost: unknown key"),
    (lambda d: d["conv"][0].pop("channels"), r"^conv\[0\]\.channels: missing required key"),
    (lambda d: d["hidden"].update(k=701), r"^hidden\.k: must be in 1\.\.700"),
    (lambda d: d.update(hidden=700), r"^hidden: expected a mapping"),
])
def test_network_config_names_the_wrong_key(change, message):
    fields = dataclasses.asdict(job("mnist", "sparse_cnn2").model)
    change(fields)
    with pytest.raises(ValueError, match=message):
        network_config(fields)
