"""A stride-1, unpadded, ungrouped 2D convolution on the CPU that visits only the non-zero
values: inputs in the forward pass, output gradients in the backward pass. Compiled with numba.
Entry: ``conv2d(x, weight, bias)``; its choices: ``forward_path(x)`` and ``gradient_paths``.

Backward. In these networks every convolution is followed by 2x2 max pooling and then ReLU or
k-winners, so at most a quarter of a convolution's output positions receive a gradient (the
window maxima), and after k-winners far fewer: 400 of Sparse CNN-2's 18,432 first-layer
outputs per sample. A dense backward (oneDNN here) multiplies all the zeros anyway. The loops
start from each non-zero gradient g at output (o, i, j) and add

    dW[o, :, di, dj]          += g * x[:, i + di, j + dj]     (weight gradient)
    dx[:, i + di, j + dj]     += g * W[o, :, di, dj]          (input gradient)

for every kernel offset (di, dj). Inputs, weights and gradients are laid out channels-last
(rows of W * C values) so that each kernel row is one contiguous run of KW * C products.
The weight gradient is split over output channels and the input gradient over samples, so
parallel chunks never write to the same place. Each gradient plane's non-zero positions are
first listed without branches (``_nonzeros``), so the loops never guess which values are zero.

The weight gradient of a one-channel input (every network's first layer) adds rows of only KW
products per non-zero gradient, which pays behind k-winners (2% non-zero) but not behind ReLU
(12%): there it is one matrix product, the output gradient (O, B*Ho*Wo) times the input's
B*Ho*Wo x (KH*KW) patches. oneDNN ran at 3-4 GMAC/s on this 25-tap, one-channel case, a fifth
of Dense CNN-1's training step: at B64 6.4 ms against the product's 2.0-2.2 ms and, at 2%
non-zero, the loop's 1.5 ms (B4: 0.49 against 0.14 and 0.11 ms).

Forward. The sum turned around: each non-zero input v at (c, r, s) adds v * W[:, c, r - i,
s - j] to the outputs (i, j) whose windows hold it. After k-winners about a tenth of the second
convolution's inputs are non-zero (Sparse CNN-2: 400 winners of 4,608 pooled values, about 9%
in training and 13% in evaluation), so this does a tenth of a dense convolution's work: 1.4-1.8x
faster than oneDNN in evaluation and 2.1x in training (real k-winners inputs, B256, one
thread); on randomly placed non-zeros still 1.2x at 25%, breaking even near 30%. Much of its
cost is loading and storing the outputs: every non-zero channel at one input position adds to
the same outputs, so it takes the inputs position by position and adds up to four channels in
one pass over them.

All of them are the same sums as oneDNN's, added in another order: equal to ``F.conv2d`` and
its gradients to float32 rounding (about 1e-6 relative), not bit for bit. The dense cases go
to torch itself, bit for bit.
"""

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from models.kernels.rows import chunk_count, run_rows

SPARSE_MAX = 0.5  # above this fraction of non-zero output gradients, torch's dense backward
ONE_CHANNEL_LOOP_MAX = 0.05  # one input channel: the weight-gradient loop up to this fraction
SPARSE_INPUT_MAX = 0.25  # above this fraction of non-zero inputs, F.conv2d (break-even ~0.3)

# Let LLVM fuse multiply-adds and vectorise the row loops; no NaN/inf assumptions, so a NaN
# gradient still counts as non-zero and propagates.
_FAST = {"contract", "arcp", "reassoc"}


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _nonzeros(flat, idx):
    """Write the positions of ``flat``'s non-zero values (NaN included) into ``idx`` in order;
    return how many. Branch-free: a data-dependent branch per value mispredicts on scattered
    winners, which cost more than the products themselves on the one-channel first layer."""
    count = 0
    for t in range(flat.shape[0]):
        idx[count] = t
        count += flat[t] != 0
    return count


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=_FAST)
def _weight_grad_units(grad, x_rows, dw, channels, first, last):
    """dw[o] (KH, KW*C) for o in [first, last) from grad (B, O, Ho, Wo) and x_rows (B, H, W*C).
    Samples outermost, so that one sample's rows stay in cache while every unit reads them;
    each dw[o] still adds its products sample by sample, in the same order."""
    kh = dw.shape[1]
    span = dw.shape[2]
    wo = grad.shape[3]
    plane = grad.shape[2] * wo
    idx = np.empty(plane, np.int64)
    for b in range(grad.shape[0]):
        for o in range(first, last):
            g_flat = grad[b, o].reshape(plane)
            for q in range(_nonzeros(g_flat, idx)):
                p = idx[q]
                g = g_flat[p]
                i = p // wo
                base = (p - i * wo) * channels
                for di in range(kh):
                    row, x = dw[o, di], x_rows[b, i + di, base:base + span]
                    for t in range(span):  # slices: LLVM vectorises this loop
                        row[t] += g * x[t]


@numba.njit(parallel=True, nogil=True, cache=True)
def _weight_grad_units_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _weight_grad_units(*args, c * rows // chunks, (c + 1) * rows // chunks)


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=_FAST)
def _input_grad_samples(grad, w_rows, dx_rows, channels, first, last):
    """dx_rows[b] (H, W*C) for b in [first, last) from grad (B, O, Ho, Wo), w_rows (O, KH, KW*C)."""
    kh = w_rows.shape[1]
    span = w_rows.shape[2]
    wo = grad.shape[3]
    plane = grad.shape[2] * wo
    idx = np.empty(plane, np.int64)
    for b in range(first, last):
        for o in range(grad.shape[1]):
            g_flat = grad[b, o].reshape(plane)
            for q in range(_nonzeros(g_flat, idx)):
                p = idx[q]
                g = g_flat[p]
                i = p // wo
                base = (p - i * wo) * channels
                for di in range(kh):
                    row, w = dx_rows[b, i + di, base:base + span], w_rows[o, di]
                    for t in range(span):
                        row[t] += g * w[t]


@numba.njit(parallel=True, nogil=True, cache=True)
def _input_grad_samples_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _input_grad_samples(*args, c * rows // chunks, (c + 1) * rows // chunks)


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=_FAST)
def _sparse_input_samples(x, w_flip, bias_row, out, first, last):
    """out[b] (O, Ho, Wo) for b in [first, last) from x (B, C, H, W), mostly zeros, and w_flip
    (C, KH, KW*O): W[o, c, di, KW-1-m] at [c, di, m*O + o], the kernel mirrored along its
    width so that one input's products for a kernel row land on one contiguous run of the
    output row. Output rows are accumulated channels-last (Ho, Wo*O), starting from bias_row
    (the bias repeated Wo times), then transposed into out[b].

    The inputs are visited position by position: every non-zero channel at (r, s) adds to the
    same runs of the output rows, so up to four of them are added in one pass over a run
    (one load and store of the output per four products instead of per product)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_c, ho, wo = out.shape[1], out.shape[2], out.shape[3]
    kh = w_flip.shape[1]
    kw = w_flip.shape[2] // out_c
    chan = np.empty(channels, np.int64)
    acc = np.empty((ho, wo * out_c), np.float32)
    for b in range(first, last):
        for i in range(ho):
            acc[i, :] = bias_row
        xb = x[b]
        for y in range(height):
            for col in range(width):
                count = _nonzeros(xb[:, y, col], chan)  # the channels non-zero at (y, col)
                if count == 0:
                    continue
                first_x, last_x = max(0, col - kw + 1), min(col, wo - 1)  # output columns
                start, span = first_x * out_c, (last_x - first_x + 1) * out_c
                end = (first_x - col + kw - 1) * out_c + span  # the run's end in w_flip
                for di in range(max(0, y - ho + 1), min(kh, y + 1)):
                    row = acc[y - di, start:start + span]
                    q = 0
                    while q + 4 <= count:
                        c0, c1, c2, c3 = chan[q], chan[q + 1], chan[q + 2], chan[q + 3]
                        v0, v1 = xb[c0, y, col], xb[c1, y, col]
                        v2, v3 = xb[c2, y, col], xb[c3, y, col]
                        w0, w1 = w_flip[c0, di, end - span:end], w_flip[c1, di, end - span:end]
                        w2, w3 = w_flip[c2, di, end - span:end], w_flip[c3, di, end - span:end]
                        for s in range(span):
                            row[s] += v0 * w0[s] + v1 * w1[s] + v2 * w2[s] + v3 * w3[s]
                        q += 4
                    for q in range(q, count):
                        v, w = xb[chan[q], y, col], w_flip[chan[q], di, end - span:end]
                        for s in range(span):
                            row[s] += v * w[s]
        for o in range(out_c):
            for i in range(ho):
                for j in range(wo):
                    out[b, o, i, j] = acc[i, j * out_c + o]


@numba.njit(parallel=True, nogil=True, cache=True)
def _sparse_input_samples_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _sparse_input_samples(*args, c * rows // chunks, (c + 1) * rows // chunks)


@numba.njit(nogil=True, cache=True)
def _nonzero_fraction(grad):
    """The fraction of non-zero values of a contiguous array (one pass, no allocation)."""
    flat = grad.reshape(-1)
    count = 0
    for v in flat:
        count += v != 0
    return count / max(flat.shape[0], 1)


def forward_path(x):
    """How ``conv2d`` computes its output from ``x`` (B, C, H, W): "sparse", the loop over the
    non-zero inputs (several channels, at most SPARSE_INPUT_MAX of the values non-zero), or
    "dense", ``F.conv2d`` (one channel: no sum over channels to skip)."""
    if x.shape[1] == 1 or _nonzero_fraction(x.detach().contiguous().numpy()) > SPARSE_INPUT_MAX:
        return "dense"
    return "sparse"


def gradient_paths(grad, in_channels, need_input=True, need_weight=True):
    """How the backward pass computes the gradients asked for, from the output gradient
    ``grad`` (B, O, Ho, Wo): {"input": path, "weight": path}, each path one of

        "loop"     the loops over the non-zero gradients: at most SPARSE_MAX of ``grad``
                   non-zero, or for the weight of a one-channel input at most
                   ONE_CHANNEL_LOOP_MAX of the first sample's (1/B of a full scan)
        "product"  the weight of a one-channel input above that: one matrix product
        "torch"    torch's convolution_backward: more than SPARSE_MAX non-zero
    """
    paths = {}
    if need_weight and in_channels == 1:
        first = _nonzero_fraction(grad[0].detach().contiguous().numpy())
        paths["weight"] = "product" if first > ONE_CHANNEL_LOOP_MAX else "loop"
    rest = [name for name, need in (("input", need_input),
                                    ("weight", need_weight and in_channels > 1)) if need]
    if rest:
        sparse = _nonzero_fraction(grad.detach().contiguous().numpy()) <= SPARSE_MAX
        paths.update(dict.fromkeys(rest, "loop" if sparse else "torch"))
    return paths


def _rows(t):
    """(B, C, H, W) -> contiguous channels-last (B, H, W * C), as a numpy view."""
    b, c, h, w = t.shape
    return t.detach().permute(0, 2, 3, 1).contiguous().view(b, h, w * c).numpy()


def _sparse_input_conv2d(x, weight, bias):
    """F.conv2d(x, weight, bias) from the non-zeros of the contiguous ``x`` alone."""
    out_c, in_c, kh, kw = weight.shape
    b, _, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    # W[o, c, di, dj] at [c, di, (kw - 1 - dj) * out_c + o]: see _sparse_input_samples
    w_flip = weight.detach().flip(3).permute(1, 2, 3, 0).contiguous().view(in_c, kh, kw * out_c)
    bias_row = (x.new_zeros(out_c) if bias is None else bias.detach()).repeat(wo)
    out = x.new_empty(b, out_c, ho, wo)
    args = (x.numpy(), w_flip.numpy(), bias_row.numpy(), out.numpy())
    run_rows(_sparse_input_samples, _sparse_input_samples_chunks, args, b, chunk_count(out))
    return out


def _forward(x, weight, bias):
    """F.conv2d(x, weight, bias), from x's non-zeros alone when they are few enough."""
    x = x.detach().contiguous()
    if forward_path(x) == "dense":
        return F.conv2d(x, weight.detach(), None if bias is None else bias.detach())
    return _sparse_input_conv2d(x, weight, bias)


def _torch_backward(grad, x, weight, need_x, need_w):
    """(input gradient, weight gradient) by torch; None where not asked for."""
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [need_x, need_w, False])
    return grad_x, grad_w


def _one_channel_weight_grad(grad, x, weight):
    """The weight gradient (O, 1, KH, KW) of a one-channel ``x`` (B, 1, H, W) as one matrix
    product: grad as (O, B*Ho*Wo) times the input's patches as (B*Ho*Wo, KH*KW), the patches
    laid out offset by offset (KH*KW rows of B*Ho*Wo values), so that the product's long
    dimension is contiguous on both sides."""
    kh, kw = weight.shape[2:]
    b, out_c, ho, wo = grad.shape
    x = x.detach().contiguous()
    sb, sh, sw = x.stride(0), x.stride(2), x.stride(3)
    patches = x.as_strided((kh, kw, b, ho, wo), (sh, sw, sb, sh, sw)).reshape(kh * kw, -1)
    g = grad.view(b, out_c, ho * wo).transpose(0, 1).reshape(out_c, -1)
    return torch.mm(g, patches.t()).view(out_c, 1, kh, kw)


def _loop_weight_grad(grad, x, weight):
    """The weight gradient from the loop over the non-zero output gradients (contiguous)."""
    out_c, in_c, kh, kw = weight.shape
    dw = weight.new_zeros(out_c, kh, kw, in_c)
    args = (grad.numpy(), _rows(x), dw.view(out_c, kh, kw * in_c).numpy(), in_c)
    run_rows(_weight_grad_units, _weight_grad_units_chunks, args, out_c, chunk_count(grad, out_c))
    return dw.permute(0, 3, 1, 2).contiguous()


def _loop_input_grad(grad, x, weight):
    """The input gradient from the loop over the non-zero output gradients (contiguous)."""
    b, in_c, h, w = x.shape
    dx = x.new_zeros(b, h, w, in_c)
    args = (grad.numpy(), _rows(weight), dx.view(b, h, w * in_c).numpy(), in_c)
    run_rows(_input_grad_samples, _input_grad_samples_chunks, args, b, chunk_count(grad))
    return dx.permute(0, 3, 1, 2).contiguous()


_WEIGHT_GRAD = {"loop": _loop_weight_grad, "product": _one_channel_weight_grad}


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
        paths = gradient_paths(grad, weight.shape[1], need_x, need_w)
        grad_x = grad_w = None
        by_torch = [paths.get(name) == "torch" for name in ("input", "weight")]
        if any(by_torch):
            grad_x, grad_w = _torch_backward(grad, x, weight, *by_torch)
        if paths.get("weight") in _WEIGHT_GRAD:
            grad_w = _WEIGHT_GRAD[paths["weight"]](grad, x, weight)
        if paths.get("input") == "loop":
            grad_x = _loop_input_grad(grad, x, weight)
        return grad_x, grad_w, grad_b


def conv2d(x, weight, bias=None):
    """``F.conv2d(x, weight, bias)`` (stride 1, no padding, one group) of float32 CPU tensors,
    x (B, C, H, W), by the paths of ``forward_path`` and, when autograd asks, ``gradient_paths``."""
    if x.shape[1] != weight.shape[1]:  # the loops do not check their bounds
        raise ValueError(f"conv2d: weight {tuple(weight.shape)} expects {weight.shape[1]} input "
                         f"channels, got input {tuple(x.shape)}")
    if torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad):
        return _Conv2dCPU.apply(x, weight, bias)
    return _forward(x, weight, bias)
