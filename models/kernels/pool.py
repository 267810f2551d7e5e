"""2x2 max pooling with stride 2 on the CPU, compiled with numba. Entry: ``max_pool2x2(x)``.

On this torch build ``F.max_pool2d`` on a contiguous (NCHW) float32 CPU tensor runs 7-12x
slower than these loops (it is fast only for channels-last tensors, and converting costs more
than the pooling). They compute exactly what it computes: each output is the maximum of its
2x2 window (rows 2i, 2i+1, columns 2j, 2j+1; a trailing odd row or column is dropped), scanned
in row-major order so that the first maximum wins and a NaN wins; the gradient goes to that
one position, zeros elsewhere.
"""

import numba
import numpy as np
import torch

from models.kernels.rows import chunk_count, run_rows


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


@numba.njit(parallel=True, nogil=True, cache=True)
def _forward_planes_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _forward_planes(*args, c * rows // chunks, (c + 1) * rows // chunks)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _backward_planes(grad, arg, grad_in, first, last):
    zero = np.float32(0.0)
    for p in range(first, last):
        grad_in[p] = zero  # covers a trailing odd row or column
        for i in range(grad.shape[1]):
            for j in range(grad.shape[2]):
                g, k = grad[p, i, j], arg[p, i, j]
                grad_in[p, 2 * i + k // 2, 2 * j + k % 2] = g


@numba.njit(parallel=True, nogil=True, cache=True)
def _backward_planes_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _backward_planes(*args, c * rows // chunks, (c + 1) * rows // chunks)


def _planes(x):
    """A contiguous (P, H, W) float32 numpy view of ``x`` (B, C, H, W)."""
    b, c, h, w = x.shape
    return x.detach().contiguous().view(b * c, h, w).numpy()


class _MaxPool2x2CPU(torch.autograd.Function):
    """The maxima of the 2x2 windows, and in training their positions 0..3 (uint8) for the
    backward pass, which sends each output's gradient to its window's maximum."""

    @staticmethod
    def forward(ctx, x):  # (B, C, H, W) -> (B, C, H // 2, W // 2)
        b, c, h, w = x.shape
        out = x.new_empty(b, c, h // 2, w // 2)
        save = ctx.needs_input_grad[0]
        arg = torch.empty((b * c, h // 2, w // 2) if save else (0, 0, 0), dtype=torch.uint8)
        views = (_planes(x), out.view(b * c, h // 2, w // 2).numpy(), arg.numpy(), save)
        run_rows(_forward_planes, _forward_planes_chunks, views, b * c, chunk_count(x))
        ctx.save_for_backward(arg)
        ctx.input_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (arg,) = ctx.saved_tensors
        b, c, h, w = ctx.input_shape
        grad_in = grad.new_empty(ctx.input_shape)
        views = (_planes(grad), arg.numpy(), grad_in.view(b * c, h, w).numpy())
        run_rows(_backward_planes, _backward_planes_chunks, views, b * c, chunk_count(grad_in))
        return grad_in


def max_pool2x2(x):
    """``F.max_pool2d(x, 2)`` of a float32 (B, C, H, W) CPU tensor, bit for bit, and its
    gradient."""
    return _MaxPool2x2CPU.apply(x)
