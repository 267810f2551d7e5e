"""``run.py CONFIG --describe``: each network's layers, k of n, weight density and parameter
counts (the paper's Table 3 with counts), without training or data."""

import torch

from experiments.core.tables import write_table
from models import build_network, conv_output_sizes, count_parameters


def _activation(k, n):
    return "ReLU" if k is None else f"k={k} of {n} ({k / n:.1%})"


def layer_rows(cfg):
    """[(layer, activation, weight density)] for one NetworkConfig."""
    rows = []
    for i, (layer, (c, h, w)) in enumerate(zip(cfg.conv, conv_output_sizes(cfg)), start=1):
        rows.append((f"conv{i} {c} ch {cfg.kernel_size}x{cfg.kernel_size} -> {c}x{h}x{w}",
                     _activation(layer.k, c * h * w), 1.0))
    hidden = cfg.hidden
    rows.append((f"hidden {hidden.units}", _activation(hidden.k, hidden.units), hidden.density))
    rows.append((f"output {cfg.num_classes}", "log-softmax", 1.0))
    return rows


def describe_network(name, job):
    """One summary row (dict) for a network of an experiment."""
    torch.manual_seed(0)
    total, nonzero = count_parameters(build_network(job.model))
    layers = []
    for layer, act, density in layer_rows(job.model):
        dens = "" if density == 1.0 else f", weights {density:.0%}"
        layers.append(f"{layer} [{act}{dens}]")
    train, model = job.train, job.model
    return {"network": name, "label": job.label, "layers": "; ".join(layers),
            "hidden_density": model.hidden.density, "k_inference_factor": model.k_inference_factor,
            "boost": f"{model.boost_strength} x {model.boost_strength_factor}/epoch",
            "lr": train.lr, "lr_gamma": train.lr_gamma, "momentum": train.momentum,
            "weight_decay": train.weight_decay, "batch": f"{train.batch_size_at(0)} then "
            f"{train.batch_size}", "epochs": train.epochs,
            "total_params": total, "nonzero_params": nonzero}


def describe(suite, out_dir):
    """Print and write networks.md / networks.csv for every network the experiment runs."""
    rows = [describe_network(name, suite.jobs[name]) for name in suite.run]
    for row in rows:
        print(f"{row['label'] or row['network']}: {row['total_params']:,} parameters, "
              f"{row['nonzero_params']:,} non-zero")
        for layer in row["layers"].split("; "):
            print(f"    {layer}")
    paths = write_table(rows, out_dir / "networks", title=f"Networks of {suite.experiment}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return rows
