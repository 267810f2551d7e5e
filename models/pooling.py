"""2x2 max pooling with stride 2, as ``nn.MaxPool2d(2)`` computes it, with a fast CPU path.

``MaxPool2x2`` gives the same outputs and gradients as ``F.max_pool2d(x, 2)`` bit for bit
(tested): the maximum of each 2x2 window (a trailing odd row or column dropped), the gradient
to the window's first maximum (a NaN wins). For float32 CPU tensors a numba kernel computes
them (models/kernels/pool.py, 7-12x faster than this torch build's NCHW max pooling);
elsewhere (GPU, other dtypes, MODELS_BACKEND=torch) it is ``F.max_pool2d``.
"""

import torch.nn.functional as F
from torch import nn

from models import backend, kernels


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` (kernel 2, stride 2, floor mode) on (B, C, H, W) inputs."""

    def forward(self, x):  # (B, C, H, W) -> (B, C, H // 2, W // 2)
        if x.dim() == 4 and backend.uses_cpu_kernel(x):
            return kernels.pool.max_pool2x2(x)
        return F.max_pool2d(x, 2)
