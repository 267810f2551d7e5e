"""Trained networks shipped with the code: ``load_pretrained("sparse_cnn2")``.

``models/pretrained/<name>.pt`` holds, for seed 42 of each of the paper's eight MNIST networks,
the state after the last training epoch (weights, sparse masks, duty cycles, boost strength),
the NetworkConfig it was built from, and where it came from (``info``: the run folder, epoch,
git commit and that epoch's recorded scores). Stored compactly: a SparseWeights layer keeps its
mask as packed bits and its weight as the values at the mask's ones; everything else as is,
float32, so the network loads bit for bit as it was trained.

    from models import load_pretrained
    net = load_pretrained("sparse_cnn2")      # in eval mode, on the CPU
    info = pretrained_info("sparse_cnn2")      # {"run": ..., "epoch": ..., "record": {...}}

The inputs are MNIST images normalised with mean 0.1307 and std 0.3081, shape (B, 1, 28, 28);
the output is log-probabilities over the ten digits.
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from models.network import build_network, network_config
from models.sparse_weights import SparseWeights

FOLDER = Path(__file__).with_name("pretrained")
FORMAT = 1


def available():
    """The names of the shipped networks."""
    return sorted(p.stem for p in FOLDER.glob("*.pt"))


def compact_state(model):
    """``model.state_dict()`` with each SparseWeights weight as its mask bits and non-zeros."""
    state = model.state_dict()
    for prefix, module in model.named_modules():
        if isinstance(module, SparseWeights):
            key, mask_key = f"{prefix}.module.weight", f"{prefix}.mask"
            keep = state.pop(mask_key).bool()
            weight = state.pop(key)
            state[key] = {"shape": list(weight.shape), "values": weight[keep].clone(),
                          "mask_bits": torch.from_numpy(np.packbits(keep.numpy().ravel()))}
    return state


def full_state(compact):
    """The inverse of ``compact_state``: a plain state dict."""
    state = {}
    for key, value in compact.items():
        if isinstance(value, dict):
            shape = value["shape"]
            bits = np.unpackbits(value["mask_bits"].numpy(), count=int(np.prod(shape)))
            keep = torch.from_numpy(bits.astype(bool)).view(shape)
            weight = torch.zeros(shape, dtype=value["values"].dtype)
            weight[keep] = value["values"]
            state[key] = weight
            state[key.removesuffix(".module.weight") + ".mask"] = keep.to(weight.dtype)
        else:
            state[key] = value
    return state


def save_pretrained(model, cfg, path, info):
    """Write ``model`` (built from NetworkConfig ``cfg``) and its provenance ``info`` to
    ``path`` in the compact form."""
    torch.save({"format": FORMAT, "config": dataclasses.asdict(cfg), "info": info,
                "state": compact_state(model)}, path)


def _read(name):
    path = FOLDER / f"{name}.pt"
    if not path.is_file():
        raise ValueError(f"no pretrained network {name!r} (shipped: {', '.join(available())})")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_pretrained(name, pretrained=True):
    """The shipped network ``name`` in eval mode on the CPU (untrained when not ``pretrained``:
    the same architecture with a fresh initialisation). The global RNG is left as it was."""
    data = _read(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_network(network_config(data["config"]))
    if pretrained:
        model.load_state_dict(full_state(data["state"]))
    return model.eval()


def pretrained_config(name):
    """The NetworkConfig the shipped network ``name`` was built from."""
    return network_config(_read(name)["config"])


def pretrained_info(name):
    """Where the shipped network ``name`` came from: run folder, seed, epoch, commit, record."""
    return _read(name)["info"]
