"""CPU kernels for a convolution that visit only the non-zero values: output gradients in the
backward pass, inputs in the forward pass (the end of this file).

In these networks every convolution is followed by 2x2 max pooling and then ReLU or k-winners,
so at most a quarter of a convolution's output positions receive a gradient (the window
maxima), and after k-winners far fewer: 400 of Sparse CNN-2's 18,432 first-layer outputs per
sample. A dense backward (oneDNN here) multiplies all the zeros anyway. These loops start from
each non-zero gradient g at output (o, i, j) of a stride-1, unpadded convolution and add

    dW[o, :, di, dj]          += g * x[:, i + di, j + dj]     (weight gradient)
    dx[:, i + di, j + dj]     += g * W[o, :, di, dj]          (input gradient)

for every kernel offset (di, dj). Inputs, weights and gradients are laid out channels-last
(rows of W * C values) so that each kernel row is one contiguous run of KW * C products.
The weight gradient is split over output channels and the input gradient over samples, so
parallel chunks never write to the same place. Each gradient plane's non-zero positions are
first listed without branches (``_nonzeros``), so the loops never guess which values are zero.

The forward kernel turns the sum around: each non-zero input v at (c, r, s) adds v * W[:, c,
r - i, s - j] to the outputs (i, j) whose windows hold it. After k-winners about a tenth of the
second convolution's inputs are non-zero, so this does a tenth of a dense convolution's work.
Much of its cost is loading and storing the outputs: every non-zero channel at one input
position adds to the same outputs, so it takes the inputs position by position and adds up to
four channels in one pass over them.
"""

import numba
import numpy as np

from models.backend import run_rows

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


def weight_grad(grad, x_rows, dw, channels, chunks=1):
    """Add the weight gradient into ``dw`` (O, KH, KW*C), zeroed by the caller; the output
    channels split into ``chunks`` parallel tasks."""
    run_rows(_weight_grad_units, (grad, x_rows, dw, channels), dw.shape[0], chunks)


def input_grad(grad, w_rows, dx_rows, channels, chunks=1):
    """Add the input gradient into ``dx_rows`` (B, H, W*C), zeroed by the caller; the samples
    split into ``chunks`` parallel tasks."""
    run_rows(_input_grad_samples, (grad, w_rows, dx_rows, channels), dx_rows.shape[0], chunks)


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


def sparse_input_forward(x, w_flip, bias_row, out, chunks=1):
    """Write the convolution of ``x`` into ``out`` (B, O, Ho, Wo) visiting only x's non-zero
    values (see ``_sparse_input_samples`` for the layouts); samples split into ``chunks``."""
    run_rows(_sparse_input_samples, (x, w_flip, bias_row, out), out.shape[0], chunks)


@numba.njit(nogil=True, cache=True)
def nonzero_fraction(grad):
    """The fraction of non-zero values of a contiguous array (one pass, no allocation)."""
    flat = grad.reshape(-1)
    count = 0
    for v in flat:
        count += v != 0
    return count / max(flat.shape[0], 1)
