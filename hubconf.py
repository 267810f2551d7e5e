"""torch.hub entry points: the shipped seed-42 MNIST networks (models/pretrained/).

    net = torch.hub.load(REPO_DIR, "sparse_cnn2", source="local")   # in eval mode, on the CPU

Inputs: MNIST images normalised with mean 0.1307 and std 0.3081, (B, 1, 28, 28); outputs:
log-probabilities over the ten digits. ``pretrained=False`` gives the untrained network.
"""

from models.pretrained import load_pretrained

dependencies = ["torch", "numba"]


def dense_cnn1(pretrained=True):
    """Dense CNN-1: conv 30 (ReLU), hidden 1000 (ReLU)."""
    return load_pretrained("dense_cnn1", pretrained)


def dense_cnn2(pretrained=True):
    """Dense CNN-2: conv 30, conv 30, hidden 1000, all ReLU."""
    return load_pretrained("dense_cnn2", pretrained)


def sparse_cnn1(pretrained=True):
    """Sparse CNN-1: conv 30 (k=400), hidden 150 (k=50, 30% of the weights)."""
    return load_pretrained("sparse_cnn1", pretrained)


def sparse_cnn2(pretrained=True):
    """Sparse CNN-2: conv 32 (k=400), conv 64 (k=300), hidden 700 (k=100, 30% of the weights)."""
    return load_pretrained("sparse_cnn2", pretrained)


def dense_cnn2_sp3(pretrained=True):
    """Dense CNN-2 SP3: Dense CNN-2's convs, a sparse hidden layer (700, k=100, 30% weights)."""
    return load_pretrained("dense_cnn2_sp3", pretrained)


def sparse_cnn2_d3(pretrained=True):
    """Sparse CNN-2 D3: Sparse CNN-2's convs, a dense hidden layer (1000, ReLU)."""
    return load_pretrained("sparse_cnn2_d3", pretrained)


def sparse_cnn2_w1(pretrained=True):
    """Sparse CNN-2 W1: Sparse CNN-2 with dense hidden weights."""
    return load_pretrained("sparse_cnn2_w1", pretrained)


def sparse_cnn2_dsw(pretrained=True):
    """Sparse CNN-2 DSW: sparse convs, hidden 1000 with ReLU and 30% of the weights."""
    return load_pretrained("sparse_cnn2_dsw", pretrained)
