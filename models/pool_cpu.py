"""CPU kernels for 2x2 max pooling with stride 2, compiled with numba.

On this torch build ``F.max_pool2d`` on a contiguous (NCHW) float32 CPU tensor runs 7-12x
slower than these loops (it is fast only for channels-last tensors, and converting costs more
than the pooling). They compute exactly what it computes: each output is the maximum of its
2x2 window (rows 2i, 2i+1, columns 2j, 2j+1; a trailing odd row or column is dropped), scanned
in row-major order so that the first maximum wins and a NaN wins; the gradient goes to that
one position, zeros elsewhere.
"""

import numba
import numpy as np

from models.backend import run_rows


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _maximum(r0, r1, j):
    """The maximum of one window, scanned in row-major order; a NaN wins."""
    best = np.float32(-np.inf)
    for v in (r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]):
        if v > best or v != v:
            best = v
    return best


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _window(r0, r1, j):
    """(maximum, its position 0..3) of one window. The position comes from comparisons with
    the maximum written as selects, not from a branch per value: random data made those
    branches mispredict, and saving the positions cost 10x the pooling itself."""
    a, b, c, d = r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]
    best = _maximum(r0, r1, j)
    # The first value equal to the maximum (ties: the first wins) ...
    where = np.uint8(3)
    where = np.uint8(2) if c == best else where
    where = np.uint8(1) if b == best else where
    where = np.uint8(0) if a == best else where
    # ... unless the maximum is NaN: each NaN replaces the previous one, so the last NaN.
    nan_at = np.uint8(0)
    nan_at = np.uint8(1) if b != b else nan_at
    nan_at = np.uint8(2) if c != c else nan_at
    nan_at = np.uint8(3) if d != d else nan_at
    return best, (nan_at if best != best else where)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _forward_planes(x, out, arg, save, first, last):
    for p in range(first, last):
        for i in range(out.shape[1]):
            r0, r1 = x[p, 2 * i], x[p, 2 * i + 1]
            if save:
                for j in range(out.shape[2]):
                    out[p, i, j], arg[p, i, j] = _window(r0, r1, j)
            else:  # the maxima alone: LLVM vectorises this loop
                for j in range(out.shape[2]):
                    out[p, i, j] = _maximum(r0, r1, j)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _backward_planes(grad, arg, grad_in, first, last):
    zero = np.float32(0.0)
    for p in range(first, last):
        grad_in[p] = zero  # covers a trailing odd row or column
        for i in range(grad.shape[1]):
            for j in range(grad.shape[2]):
                g, k = grad[p, i, j], arg[p, i, j]
                grad_in[p, 2 * i + k // 2, 2 * j + k % 2] = g


def forward(x, out, arg, save, chunks=1):
    """out (P, H//2, W//2) <- the maxima of ``x`` (P, H, W); ``arg`` (uint8) <- their window
    positions 0..3 when ``save``; the planes split into ``chunks`` parallel tasks."""
    run_rows(_forward_planes, (x, out, arg, save), x.shape[0], chunks)


def backward(grad, arg, grad_in, chunks=1):
    """grad_in (P, H, W) <- ``grad`` (P, H//2, W//2) at each window's maximum, zeros elsewhere."""
    run_rows(_backward_planes, (grad, arg, grad_in), grad.shape[0], chunks)
