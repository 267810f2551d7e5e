"""``Conv2d``: ``nn.Conv2d`` whose CPU passes skip zeros: mostly-zero inputs in the forward
pass, zero output gradients in the backward pass.

The parameters and state_dict keys are ``nn.Conv2d``'s. On float32 CPU tensors of a stride-1,
unpadded, ungrouped convolution (the networks' 5x5 convolutions) two things differ:

- Forward, when the input has several channels and at most ``SPARSE_INPUT_MAX`` of its values
  are non-zero: the output comes from a loop over the non-zero inputs (models/conv_cpu.py).
  The second convolution of every k-winners network sees such inputs (Sparse CNN-2: 400
  winners of 4,608 pooled values, about 9% non-zero in training and 13% in evaluation), and
  the loop is 1.4-1.8x faster there than oneDNN's dense convolution in evaluation and 2.1x in
  training (real k-winners inputs, B256, one thread); on inputs with randomly placed
  non-zeros it is still 1.2x faster at 25% and breaks even near 30%.
  Inputs behind ReLU (about half non-zero), one-channel images, other devices and dtypes go to
  ``F.conv2d``.
- Backward, when at most ``SPARSE_MAX`` of the output gradient is non-zero: the weight and
  input gradients come from loops that visit the non-zero gradients only (for the weight
  gradient of a one-channel input, the first layer's, only behind k-winners: see below).
  Every convolution here feeds 2x2 max pooling and then ReLU or k-winners, so at most a
  quarter of its outputs get a gradient, and after k-winners a few percent (Sparse CNN-2:
  400 of 18,432 first-layer outputs per sample).
- The weight gradient of a one-channel input (every network's first layer): behind k-winners
  (at most ``ONE_CHANNEL_LOOP_MAX`` of the first sample's gradient non-zero) the loop, else
  one matrix product, the output gradient (O, B*Ho*Wo) times the input's B*Ho*Wo x (KH*KW)
  patches. oneDNN's ran at 3-4 GMAC/s on this 25-tap, one-channel case, a fifth of Dense
  CNN-1's training step: at B64 6.4 ms against the product's 2.0-2.2 ms and, at 2% non-zero,
  the loop's 1.5 ms (B4: 0.49 against 0.14 and 0.11 ms).

All three are the same sums as oneDNN's, added in another order: they agree with ``nn.Conv2d`` to
float32 rounding (about 1e-6 relative, tested), not bit for bit, so training and evaluation on
this path follow another rounding path than on ``nn.Conv2d``'s (a k-winners tie or an argmax
this close is rare: see tests/test_pretrained.py). ``MODELS_BACKEND=torch`` gives
``nn.Conv2d`` exactly.
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
ONE_CHANNEL_LOOP_MAX = 0.05  # one input channel: the loop up to this non-zero fraction
SPARSE_INPUT_MAX = 0.25  # above this fraction of non-zero inputs, F.conv2d (break-even ~0.3)


def _rows(t):
    """(B, C, H, W) -> contiguous channels-last (B, H, W * C), as a numpy view."""
    b, c, h, w = t.shape
    return t.detach().permute(0, 2, 3, 1).contiguous().view(b, h, w * c).numpy()


def _forward(x, weight, bias):
    """F.conv2d(x, weight, bias), from x's non-zeros alone when they are few enough."""
    out_c, in_c, kh, kw = weight.shape
    x = x.detach().contiguous()
    if in_c == 1 or conv_cpu.nonzero_fraction(x.numpy()) > SPARSE_INPUT_MAX:
        return F.conv2d(x, weight.detach(), None if bias is None else bias.detach())
    b, _, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    # W[o, c, di, dj] at [c, di, (kw - 1 - dj) * out_c + o]: see conv_cpu._sparse_input_samples
    w_flip = weight.detach().flip(3).permute(1, 2, 3, 0).contiguous().view(in_c, kh, kw * out_c)
    bias_row = (x.new_zeros(out_c) if bias is None else bias.detach()).repeat(wo)
    out = x.new_empty(b, out_c, ho, wo)
    conv_cpu.sparse_input_forward(x.numpy(), w_flip.numpy(), bias_row.numpy(), out.numpy(),
                                  chunk_count(out))
    return out


def _torch_backward(grad, x, weight, need_x, need_w):
    """(input gradient, weight gradient) of the stride-1 unpadded convolution, by torch."""
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [need_x, need_w, False])
    return grad_x, grad_w


def _one_channel_weight_grad(grad, x, kh, kw):
    """The weight gradient (O, 1, KH, KW) of a stride-1, unpadded convolution of the
    one-channel ``x`` (B, 1, H, W) as one matrix product: grad as (O, B*Ho*Wo) times the
    input's patches as (B*Ho*Wo, KH*KW), the patches laid out offset by offset (KH*KW rows of
    B*Ho*Wo values), so that the product's long dimension is contiguous on both sides."""
    b = x.shape[0]
    out_c, ho, wo = grad.shape[1], grad.shape[2], grad.shape[3]
    x = x.detach().contiguous()
    sb, sh, sw = x.stride(0), x.stride(2), x.stride(3)
    patches = x.as_strided((kh, kw, b, ho, wo), (sh, sw, sb, sh, sw)).reshape(kh * kw, -1)
    g = grad.view(b, out_c, ho * wo).transpose(0, 1).reshape(out_c, -1)
    return torch.mm(g, patches.t()).view(out_c, 1, kh, kw)


def _loop_weight_grad(grad, x, weight):
    """The weight gradient from the loop over the non-zero output gradients (contiguous)."""
    out_c, in_c, kh, kw = weight.shape
    dw = weight.new_zeros(out_c, kh, kw, in_c)
    views = (grad.numpy(), _rows(x), dw.view(out_c, kh, kw * in_c).numpy(), in_c)
    conv_cpu.weight_grad(*views, chunk_count(grad, out_c))
    return dw.permute(0, 3, 1, 2).contiguous()


class _Conv2dCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _forward(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and need_b else None
        g = grad.numpy()
        in_c, kh, kw = weight.shape[1:]
        # One input channel (the first layer): each non-zero gradient adds rows of 5 products,
        # which pays only behind k-winners (2% non-zero); behind ReLU (12%) the product does
        # better. The first sample's gradient tells which (one sample: 1/B of a full scan).
        grad_x = grad_w = None
        if need_w and in_c == 1:
            if conv_cpu.nonzero_fraction(g[0]) > ONE_CHANNEL_LOOP_MAX:
                grad_w = _one_channel_weight_grad(grad, x, kh, kw)
            else:
                grad_w = _loop_weight_grad(grad, x, weight)
            need_w = False
        if not need_x and not need_w:
            return grad_x, grad_w, grad_b
        if conv_cpu.nonzero_fraction(g) > SPARSE_MAX:
            grad_x, dense_w = _torch_backward(grad, x, weight, need_x, need_w)
            return grad_x, dense_w if need_w else grad_w, grad_b
        if need_w:
            grad_w = _loop_weight_grad(grad, x, weight)
        if need_x:
            b, _, h, w = x.shape
            dx = x.new_zeros(b, h, w, in_c)
            views = (g, _rows(weight), dx.view(b, h, w * in_c).numpy(), in_c)
            conv_cpu.input_grad(*views, chunk_count(grad))
            grad_x = dx.permute(0, 3, 1, 2).contiguous()
        return grad_x, grad_w, grad_b


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with the sparse-input CPU forward and sparse-gradient CPU backward
    described above."""

    def _conv_forward(self, input, weight, bias):
        if (conv_cpu is None or self.stride != (1, 1) or self.padding != (0, 0)
                or self.dilation != (1, 1) or self.groups != 1
                or self.padding_mode != "zeros" or input.dim() != 4
                or not uses_cpu_kernel(input, weight)):
            return super()._conv_forward(input, weight, bias)
        if torch.is_grad_enabled() and (weight.requires_grad or input.requires_grad):
            return _Conv2dCPU.apply(input, weight, bias)
        return _forward(input, weight, bias)
