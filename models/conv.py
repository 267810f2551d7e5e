"""``Conv2d``: ``nn.Conv2d`` whose CPU backward skips the zero output gradients.

Forward is ``F.conv2d`` itself, so outputs (and every evaluation) are the same bit for bit as
``nn.Conv2d``'s, and the parameters and state_dict keys are the same. Only the backward pass
differs, on float32 CPU tensors of a stride-1, unpadded, ungrouped convolution (the networks'
5x5 convolutions): when at most ``SPARSE_MAX`` of the output gradient is non-zero, the weight
and input gradients come from the loops of models/conv_cpu.py, which visit the non-zero
gradients only. Every convolution here feeds 2x2 max pooling and then ReLU or k-winners, so at
most a quarter of its outputs get a gradient, and after k-winners a few percent (Sparse CNN-2:
400 of 18,432 first-layer outputs per sample).

The gradients are the same sums as oneDNN's, added in another order: they agree to float32
rounding (about 1e-6 relative, tested), not bit for bit, so training on this path follows
another rounding path than training on ``nn.Conv2d``'s. Elsewhere (GPU, other dtypes,
``MODELS_BACKEND=torch``, denser gradients) the backward is torch's.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from models.backend import chunk_count, uses_cpu_kernel

try:
    from models import conv_cpu
except ImportError:  # pragma: no cover - numba is in requirements.txt
    conv_cpu = None

SPARSE_MAX = 0.5  # above this fraction of non-zero output gradients, torch's dense backward


def _rows(t):
    """(B, C, H, W) -> contiguous channels-last (B, H, W * C), as a numpy view."""
    b, c, h, w = t.shape
    return t.detach().permute(0, 2, 3, 1).contiguous().view(b, h, w * c).numpy()


class _Conv2dCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and need_b else None
        g = grad.numpy()
        if conv_cpu.nonzero_fraction(g) > SPARSE_MAX:
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [need_x, need_w, False])
            return grad_x, grad_w, grad_b
        out_c, in_c, kh, kw = weight.shape
        grad_x = grad_w = None
        if need_w:
            dw = weight.new_zeros(out_c, kh, kw, in_c)
            views = (g, _rows(x), dw.view(out_c, kh, kw * in_c).numpy(), in_c)
            conv_cpu.weight_grad(*views, chunk_count(grad, out_c))
            grad_w = dw.permute(0, 3, 1, 2).contiguous()
        if need_x:
            b, _, h, w = x.shape
            dx = x.new_zeros(b, h, w, in_c)
            views = (g, _rows(weight), dx.view(b, h, w * in_c).numpy(), in_c)
            conv_cpu.input_grad(*views, chunk_count(grad))
            grad_x = dx.permute(0, 3, 1, 2).contiguous()
        return grad_x, grad_w, grad_b


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with the sparse-gradient CPU backward described above."""

    def _conv_forward(self, input, weight, bias):
        if (conv_cpu is not None and torch.is_grad_enabled()
                and (weight.requires_grad or input.requires_grad)
                and self.stride == (1, 1) and self.padding == (0, 0)
                and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and input.dim() == 4
                and uses_cpu_kernel(input, weight)):
            return _Conv2dCPU.apply(input, weight, bias)
        return super()._conv_forward(input, weight, bias)
