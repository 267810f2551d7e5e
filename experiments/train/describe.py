"""``run.py CONFIG --describe``: each network's layers, k of n, weight density and parameter
counts (the paper's Table 3 with counts), without training; and each layer's multiply-adds
per image, dense and effective (models/costs.py).

Effective multiply-adds count only the products of a non-zero input with a stored weight.
Every network gets the estimate from k/n (k_eval of n after k-winners, all inputs after ReLU);
a network with shipped weights (models/pretrained/, the same config) is also measured on the
first ``MEASURED_IMAGES`` test images of its data, clean and at ``NOISY_LEVEL`` noise, when
those are on disk (nothing is downloaded: a fresh clone's describe stays fast).
"""

import dataclasses

import torch

from data import DataError, load_dataset
from experiments.core.tables import write_table
from models import build_network, conv_output_sizes, count_parameters, load_pretrained
from models.costs import layer_multiply_adds
from models.pretrained import available, pretrained_config

MEASURED_IMAGES = 1_000
NOISY_LEVEL = 0.5
NOISE_SEED = 0
NOISY_KEY = f"effective_noise_{NOISY_LEVEL:g}"


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


def shipped(name, job):
    """Whether models/pretrained holds trained weights of this very network."""
    return name in available() and pretrained_config(name) == job.model


def test_images(data):
    """(clean, noisy) first MEASURED_IMAGES test inputs of ``data`` if on disk, else None."""
    try:
        dataset = load_dataset(dataclasses.replace(data, test_limit=MEASURED_IMAGES,
                                                   download=False))
    except (DataError, FileNotFoundError):
        return None
    noisy = dataset.noisy_test_set(NOISY_LEVEL, torch.Generator().manual_seed(NOISE_SEED))
    return dataset.test_set()[0], noisy[0]


def multiply_add_rows(name, job, images):
    """Per weighted layer: dense and effective multiply-adds per image (k/n, and measured
    on the shipped weights when ``images`` (clean, noisy) are given)."""
    torch.manual_seed(0)
    estimate = layer_multiply_adds(build_network(job.model).eval(),
                                   input_shape=job.model.input_shape)
    measured = [[None] * len(estimate)] * 2
    if images is not None:
        net, threads = load_pretrained(name), torch.get_num_threads()
        torch.set_num_threads(1)  # (in a fresh process the 2-thread kernels compile first)
        try:
            measured = [layer_multiply_adds(net, x) for x in images]
        finally:
            torch.set_num_threads(threads)
    return [{"network": name, "layer": row["layer"], "dense": row["dense"],
             "effective_k_over_n": round(row["effective"]),
             "effective_clean": None if clean is None else round(clean["effective"]),
             NOISY_KEY: None if noisy is None else round(noisy["effective"]),
             "measured_on": "k/n only" if images is None else
             f"shipped weights, first {MEASURED_IMAGES:,} test images"}
            for row, clean, noisy in zip(estimate, *measured)]


def print_multiply_adds(rows):
    print("multiply-adds per image (dense; effective by k/n; measured clean, at "
          f"{NOISY_LEVEL:.0%} noise):")
    for r in rows:
        clean, noisy = r["effective_clean"], r[NOISY_KEY]
        measured = "" if clean is None else f"; {clean:,} clean, {noisy:,} noisy"
        print(f"    {r['network']} {r['layer']}: {r['dense']:,} dense, "
              f"{r['effective_k_over_n']:,} by k/n{measured}")


def describe(suite, out_dir):
    """Print and write networks.md / networks.csv (layers, parameters) and multiply_adds.md
    / multiply_adds.csv (per layer) for every network the experiment runs."""
    rows = [describe_network(name, suite.jobs[name]) for name in suite.run]
    for row in rows:
        print(f"{row['label'] or row['network']}: {row['total_params']:,} parameters, "
              f"{row['nonzero_params']:,} non-zero")
        for layer in row["layers"].split("; "):
            print(f"    {layer}")
    paths = write_table(rows, out_dir / "networks", title=f"Networks of {suite.experiment}")
    measured = [name for name in suite.run if shipped(name, suite.jobs[name])]
    images = test_images(suite.jobs[measured[0]].data) if measured else None
    costs = [r for name in suite.run for r in multiply_add_rows(
        name, suite.jobs[name], images if name in measured else None)]
    print_multiply_adds(costs)
    paths += write_table(costs, out_dir / "multiply_adds",
                         title=f"Multiply-adds per image of {suite.experiment}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return rows
