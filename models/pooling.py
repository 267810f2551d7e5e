"""2x2 max pooling with stride 2, as ``nn.MaxPool2d(2)`` computes it, with a fast CPU path.

``MaxPool2x2`` gives the same outputs and gradients as ``F.max_pool2d(x, 2)`` bit for bit
(tested): the maximum of each 2x2 window, the gradient to the window's first maximum. For
float32 CPU tensors it calls the numba kernels of models/pool_cpu.py (7-12x faster than this
torch build's NCHW max pooling); elsewhere (GPU, other dtypes, MODELS_BACKEND=torch) it is
``F.max_pool2d``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.backend import chunk_count, uses_cpu_kernel

try:
    from models import pool_cpu
except ImportError:  # pragma: no cover - numba is in requirements.txt
    pool_cpu = None


def _planes(x):
    """A contiguous (P, H, W) float32 numpy view of ``x`` (B, C, H, W)."""
    b, c, h, w = x.shape
    return x.detach().contiguous().view(b * c, h, w).numpy()


class _MaxPool2x2CPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # (B, C, H, W) -> (B, C, H // 2, W // 2)
        b, c, h, w = x.shape
        out = x.new_empty(b, c, h // 2, w // 2)
        save = ctx.needs_input_grad[0]
        arg = torch.empty((b * c, h // 2, w // 2) if save else (0, 0, 0), dtype=torch.uint8)
        views = (_planes(x), out.view(b * c, h // 2, w // 2).numpy(), arg.numpy(), save)
        pool_cpu.forward(*views, chunk_count(x))
        ctx.save_for_backward(arg)
        ctx.input_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (arg,) = ctx.saved_tensors
        b, c, h, w = ctx.input_shape
        grad_in = grad.new_empty(ctx.input_shape)
        views = (_planes(grad), arg.numpy(), grad_in.view(b * c, h, w).numpy())
        pool_cpu.backward(*views, chunk_count(grad_in))
        return grad_in


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` (kernel 2, stride 2, floor mode) on (B, C, H, W) inputs."""

    def forward(self, x):
        if pool_cpu is not None and x.dim() == 4 and uses_cpu_kernel(x):
            return _MaxPool2x2CPU.apply(x)
        return F.max_pool2d(x, 2)
