"""CPU kernels for a convolution's backward pass that visit only the non-zero output gradients.

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
parallel chunks never write to the same place.
"""

import numba
import numpy as np

from models.backend import run_rows

# Let LLVM fuse multiply-adds and vectorise the row loops; no NaN/inf assumptions, so a NaN
# gradient still counts as non-zero and propagates.
_FAST = {"contract", "arcp", "reassoc"}


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=_FAST)
def _weight_grad_units(grad, x_rows, dw, channels, first, last):
    """dw[o] (KH, KW*C) for o in [first, last) from grad (B, O, Ho, Wo) and x_rows (B, H, W*C)."""
    kh = dw.shape[1]
    span = dw.shape[2]
    for o in range(first, last):
        for b in range(grad.shape[0]):
            for i in range(grad.shape[2]):
                for j in range(grad.shape[3]):
                    g = grad[b, o, i, j]
                    if g != 0:
                        base = j * channels
                        for di in range(kh):
                            row, x = dw[o, di], x_rows[b, i + di, base:base + span]
                            for t in range(span):  # slices: LLVM vectorises this loop
                                row[t] += g * x[t]


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=_FAST)
def _input_grad_samples(grad, w_rows, dx_rows, channels, first, last):
    """dx_rows[b] (H, W*C) for b in [first, last) from grad (B, O, Ho, Wo), w_rows (O, KH, KW*C)."""
    kh = w_rows.shape[1]
    span = w_rows.shape[2]
    for b in range(first, last):
        for o in range(grad.shape[1]):
            for i in range(grad.shape[2]):
                for j in range(grad.shape[3]):
                    g = grad[b, o, i, j]
                    if g != 0:
                        base = j * channels
                        for di in range(kh):
                            row, w = dx_rows[b, i + di, base:base + span], w_rows[o, di]
                            for t in range(span):
                                row[t] += g * w[t]


def weight_grad(grad, x_rows, dw, channels, chunks=1):
    """Add the weight gradient into ``dw`` (O, KH, KW*C), zeroed by the caller; the output
    channels split into ``chunks`` parallel tasks."""
    run_rows(_weight_grad_units, _weight_grad_chunks, (grad, x_rows, dw, channels),
             dw.shape[0], chunks)


@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def _weight_grad_chunks(grad, x_rows, dw, channels, chunks):
    units = dw.shape[0]
    for c in numba.prange(chunks):
        _weight_grad_units(grad, x_rows, dw, channels, c * units // chunks,
                           (c + 1) * units // chunks)


def input_grad(grad, w_rows, dx_rows, channels, chunks=1):
    """Add the input gradient into ``dx_rows`` (B, H, W*C), zeroed by the caller; the samples
    split into ``chunks`` parallel tasks."""
    run_rows(_input_grad_samples, _input_grad_chunks, (grad, w_rows, dx_rows, channels),
             dx_rows.shape[0], chunks)


@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def _input_grad_chunks(grad, w_rows, dx_rows, channels, chunks):
    samples = dx_rows.shape[0]
    for c in numba.prange(chunks):
        _input_grad_samples(grad, w_rows, dx_rows, channels, c * samples // chunks,
                            (c + 1) * samples // chunks)


@numba.njit(nogil=True, cache=True)
def nonzero_fraction(grad):
    """The fraction of non-zero values of a contiguous array (one pass, no allocation)."""
    flat = grad.reshape(-1)
    count = 0
    for v in flat:
        count += v != 0
    return count / max(flat.shape[0], 1)
