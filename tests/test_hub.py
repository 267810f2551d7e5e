"""hubconf.py: one torch.hub entry point per shipped network, made from the registry
(models/pretrained/), each loading that network and described from its stored config."""

import importlib.util
from pathlib import Path

import torch

from models import count_parameters, load_pretrained
from models.pretrained import available

REPO = Path(__file__).resolve().parent.parent


def hubconf():
    """hubconf.py imported as torch.hub imports it (by path, the repository on sys.path)."""
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entry_points_are_the_shipped_networks():
    """torch.hub.list's rule (the module's public callables) gives exactly the registry."""
    module = hubconf()
    entries = [f for f in dir(module) if callable(getattr(module, f)) and not f.startswith("_")]
    assert entries == available()
    assert module.dependencies == ["torch", "numba"]


def test_docstrings_describe_each_network_from_its_config():
    """torch.hub.help shows the entry's docstring: its label and layers, from the stored config."""
    module = hubconf()
    assert module.sparse_cnn2.__doc__.startswith(
        "Sparse CNN-2: conv 32 (k=400 of 4608), conv 64 (k=300 of 1024), hidden 700 "
        "(k=100 of 700, 30% of the weights); output 10. Seed 42, 10 epochs")
    assert module.dense_cnn1.__doc__.startswith(
        "Dense CNN-1: conv 30 (ReLU), hidden 1000 (ReLU); output 10.")
    assert len({getattr(module, name).__doc__ for name in available()}) == len(available())


def test_torch_hub_loads_the_trained_network_and_the_untrained_one():
    hub = torch.hub.load(str(REPO), "sparse_cnn2", source="local")
    ours = load_pretrained("sparse_cnn2")
    assert not hub.training and hub.state_dict().keys() == ours.state_dict().keys()
    assert all(torch.equal(hub.state_dict()[k], v) for k, v in ours.state_dict().items())
    fresh = torch.hub.load(str(REPO), "sparse_cnn1", source="local", pretrained=False)
    trained = load_pretrained("sparse_cnn1")
    assert count_parameters(fresh) == count_parameters(trained)
    assert not torch.equal(fresh.output.weight, trained.output.weight)
    assert int(fresh.kwinners.samples_seen) == 0 < int(trained.kwinners.samples_seen)
