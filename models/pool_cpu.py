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


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _window(r0, r1, j):
    best = np.float32(-np.inf)
    where = 0
    for k, v in enumerate((r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1])):
        if v > best or v != v:
            best, where = v, k
    return best, where


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _forward_planes(x, out, arg, save, first, last):
    for p in range(first, last):
        for i in range(out.shape[1]):
            r0, r1 = x[p, 2 * i], x[p, 2 * i + 1]
            for j in range(out.shape[2]):
                best, where = _window(r0, r1, j)
                out[p, i, j] = best
                if save:
                    arg[p, i, j] = where


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _backward_planes(grad, arg, grad_in, first, last):
    zero = np.float32(0.0)
    for p in range(first, last):
        grad_in[p] = zero  # covers a trailing odd row or column
        for i in range(grad.shape[1]):
            for j in range(grad.shape[2]):
                g, k = grad[p, i, j], arg[p, i, j]
                grad_in[p, 2 * i + k // 2, 2 * j + k % 2] = g


@numba.njit(nogil=True, cache=True, boundscheck=False)
def forward(x, out, arg, save):
    """out (P, H//2, W//2) <- the maxima of ``x`` (P, H, W); ``arg`` (uint8) <- their window
    positions 0..3 when ``save``."""
    _forward_planes(x, out, arg, save, 0, x.shape[0])


@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def forward_parallel(x, out, arg, save, chunks):
    planes = x.shape[0]
    for c in numba.prange(chunks):
        _forward_planes(x, out, arg, save, c * planes // chunks, (c + 1) * planes // chunks)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def backward(grad, arg, grad_in):
    """grad_in (P, H, W) <- ``grad`` (P, H//2, W//2) at each window's maximum, zeros elsewhere."""
    _backward_planes(grad, arg, grad_in, 0, grad.shape[0])


@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def backward_parallel(grad, arg, grad_in, chunks):
    planes = grad.shape[0]
    for c in numba.prange(chunks):
        _backward_planes(grad, arg, grad_in, c * planes // chunks, (c + 1) * planes // chunks)
