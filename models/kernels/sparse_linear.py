"""A linear layer ``x @ W.T + bias`` on the CPU that skips zeros, for inference. Compiled
with numba. Entries: ``gather(x, layout)`` (zero inputs) and ``sparse_weights(x, layout)``
(zero weights); ``LinearLayout`` holds both layouts of one layer's weights.

- ``gather``: after k-winners only k of a sample's n inputs are non-zero, and its output is
  the sum of the k rows of W.T that they select. The kernel lists each sample's non-zero
  inputs (branch-free) and adds their rows 64 outputs at a time in registers
  (models/kernels/simd.py); the outputs are the outer loop, so each 64-column block of W.T
  (n x 64 values) is read from the L2 cache by every sample of the call in turn.
- ``sparse_weights``: a layer with fixed sparse weights (``SparseWeights``) keeps only its
  non-zero weights, by block of 128 inputs and then by output row (CSR per block:
  ``starts``, ``columns``, ``values``). For a tile of 64 samples it computes each output
  unit from its non-zero weights alone, with the tile's samples as the vector lanes: x.T's
  row of input i (64 values, four vectors) times weight W[o, i]; one block of inputs at a
  time, so that the rows of x.T it reads stay in L1 (the whole x.T, 256 KB for 1,024
  inputs, sits in L2). The tile's x.T is filled by 16 x 16 register transposes. Sparse
  CNN-2's hidden layer, 256 real test images, 1 thread, AVX-512: 10.0 to 7.0 us per image
  by the blocks of inputs; 4.6 to 3.8 us from 32 to 64 samples per tile (a weight's two
  scalar loads then serve four products, not two) and the transposes, one process
  alternating.

Both are the products torch computes, added in other orders: equal to ``F.linear`` to
float32 rounding. Which one pays is a matter of counts (``costs``).
"""

import numba
import numpy as np

from models.kernels.rows import chunk_count, run_rows
from models.kernels.simd import (LANES, aligned, aligned_empty, item, vadd, vfma, vload, vstore,
                                 vtranspose16, vzeros)

BLOCK = 4 * LANES  # outputs accumulated in registers at once
COLUMN_BLOCK = 2 * BLOCK  # outputs per pass over the samples (their W.T rows stay in L2)
TILE = 4 * LANES  # samples per tile of the sparse-weights kernel
INPUT_BLOCK = 128  # inputs per pass of the sparse-weights kernel: their x.T rows fit in L1


class LinearLayout:
    """``weight`` (N, M) and ``bias`` (N,) for the kernels: W.T with its columns padded to a
    multiple of BLOCK, and the non-zero weights by output row."""

    def __init__(self, weight, bias):  # float32 CPU tensors
        n_out, n_in = weight.shape
        self.n_out, self.n_in = n_out, n_in
        padded = -(-n_out // BLOCK) * BLOCK
        rows = np.zeros((n_in, padded), np.float32)
        rows[:, :n_out] = weight.t().numpy()
        self.rows = aligned(rows)
        self.bias = aligned(np.pad(bias.numpy(), (0, padded - n_out)))
        keep = weight != 0
        rows, columns = keep.nonzero().t().numpy()
        # the non-zero weights by (block of INPUT_BLOCK inputs, output row, input)
        blocks = -(-n_in // INPUT_BLOCK)
        order = np.lexsort((columns, rows, columns // INPUT_BLOCK))
        group = (columns // INPUT_BLOCK * n_out + rows)[order]
        self.starts = np.searchsorted(group, np.arange(blocks * n_out + 1)).astype(np.int64)
        self.columns = columns[order].astype(np.int64)
        self.values = weight.numpy()[rows[order], columns[order]].copy()

    @property
    def nonzero_weights(self):
        return len(self.values)


def costs(layout, batch, nonzero_inputs):
    """Products each way for ``batch`` samples with ``nonzero_inputs`` non-zero inputs in
    all: {"gather": ..., "sparse_weights": ..., "dense": ...}. ``gather`` multiplies whole
    padded rows; ``sparse_weights`` every stored weight for every sample of whole tiles."""
    tiles = -(-batch // TILE)
    return {"gather": nonzero_inputs * layout.rows.shape[1],
            "sparse_weights": tiles * TILE * layout.nonzero_weights,
            "dense": batch * layout.n_in * layout.n_out}


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _gather_samples(x, rows, bias, out, first, last):
    """out[b] (padded) for b in [first, last) = bias + sum of rows[i] * x[b, i] over x[b] != 0."""
    n_in, padded = rows.shape
    weights = rows.reshape(-1)
    inputs = np.empty((last - first, n_in), np.int64)
    counts = np.empty(last - first, np.int64)
    for b in range(first, last):  # branch-free lists of each sample's non-zero inputs
        row, listed, n = x[b], inputs[b - first], 0
        for i in range(n_in):
            listed[n] = i
            n += row[i] != 0
        counts[b - first] = n
    for c0 in range(0, padded, COLUMN_BLOCK):
        for b in range(first, last):
            row, listed, dst = x[b], inputs[b - first], out[b]
            for o in range(c0, min(c0 + COLUMN_BLOCK, padded), BLOCK):
                a0, a1 = vload(bias, o), vload(bias, o + 16)
                a2, a3 = vload(bias, o + 32), vload(bias, o + 48)
                for q in range(counts[b - first]):
                    i = item(listed, q)
                    v, w = item(row, i), i * padded + o
                    a0, a1 = vfma(a0, v, vload(weights, w)), vfma(a1, v, vload(weights, w + 16))
                    a2 = vfma(a2, v, vload(weights, w + 32))
                    a3 = vfma(a3, v, vload(weights, w + 48))
                vstore(dst, o, a0)
                vstore(dst, o + 16, a1)
                vstore(dst, o + 32, a2)
                vstore(dst, o + 48, a3)


@numba.njit(parallel=True, nogil=True, cache=True)
def _gather_samples_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _gather_samples(*args, c * rows // chunks, (c + 1) * rows // chunks)


def gather(x, layout):
    """``F.linear(x, W, bias)`` of a contiguous float32 (B, M) CPU tensor from its non-zero
    inputs alone: (B, N)."""
    out = x.new_empty(x.shape[0], layout.rows.shape[1])
    args = (x.numpy(), layout.rows, layout.bias, out.numpy())
    run_rows(_gather_samples, _gather_samples_chunks, args, x.shape[0], chunk_count(x))
    return out[:, :layout.n_out]


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _sparse_weight_tiles(x, starts, columns, values, bias, out, first, last):
    """out rows of tiles [first, last) (TILE samples each) from the stored weights alone,
    INPUT_BLOCK inputs at a time: that block's rows of the tile's x.T (16 KB) stay in L1
    while every output adds its weights from the block to its partial sums."""
    batch, n_in = x.shape
    n_out = bias.shape[0]
    blocks = (starts.shape[0] - 1) // n_out
    flat = x.reshape(-1)
    tile_t = aligned_empty(n_in * TILE)  # x.T of one tile: input i's TILE samples
    partial = aligned_empty(n_out * TILE)  # each output's TILE sums so far
    for tile in range(first, last):
        b0 = tile * TILE
        size = min(TILE, batch - b0)
        whole = size - size % LANES  # samples copied by 16 x 16 register transposes
        for s0 in range(0, whole, LANES):
            for i0 in range(0, n_in - LANES + 1, LANES):
                vtranspose16(flat, (b0 + s0) * n_in + i0, n_in, tile_t, i0 * TILE + s0, TILE,
                             LANES)
            for s in range(s0, s0 + LANES):
                for i in range(n_in - n_in % LANES, n_in):
                    tile_t[i * TILE + s] = x[b0 + s, i]
        for s in range(whole, size):
            for i in range(n_in):
                tile_t[i * TILE + s] = x[b0 + s, i]
        for s in range(size, TILE):  # a last, partial tile: zeros in the missing lanes
            for i in range(n_in):
                tile_t[i * TILE + s] = 0
        partial[:] = 0
        for k in range(blocks):
            for o in range(n_out):
                p = o * TILE
                a0, a1 = vload(partial, p), vload(partial, p + 16)
                a2, a3 = vload(partial, p + 32), vload(partial, p + 48)
                c0, c1, c2, c3 = vzeros(), vzeros(), vzeros(), vzeros()
                q, end = item(starts, k * n_out + o), item(starts, k * n_out + o + 1)
                while q + 1 < end:  # two weights per step: eight independent sums
                    w, t = item(values, q), item(columns, q) * TILE
                    a0, a1 = vfma(a0, w, vload(tile_t, t)), vfma(a1, w, vload(tile_t, t + 16))
                    a2 = vfma(a2, w, vload(tile_t, t + 32))
                    a3 = vfma(a3, w, vload(tile_t, t + 48))
                    w, t = item(values, q + 1), item(columns, q + 1) * TILE
                    c0, c1 = vfma(c0, w, vload(tile_t, t)), vfma(c1, w, vload(tile_t, t + 16))
                    c2 = vfma(c2, w, vload(tile_t, t + 32))
                    c3 = vfma(c3, w, vload(tile_t, t + 48))
                    q += 2
                if q < end:
                    w, t = item(values, q), item(columns, q) * TILE
                    a0, a1 = vfma(a0, w, vload(tile_t, t)), vfma(a1, w, vload(tile_t, t + 16))
                    a2 = vfma(a2, w, vload(tile_t, t + 32))
                    a3 = vfma(a3, w, vload(tile_t, t + 48))
                vstore(partial, p, vadd(a0, c0))
                vstore(partial, p + 16, vadd(a1, c1))
                vstore(partial, p + 32, vadd(a2, c2))
                vstore(partial, p + 48, vadd(a3, c3))
        for s in range(size):
            for o in range(n_out):
                out[b0 + s, o] = partial[o * TILE + s] + bias[o]


@numba.njit(parallel=True, nogil=True, cache=True)
def _sparse_weight_tiles_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _sparse_weight_tiles(*args, c * rows // chunks, (c + 1) * rows // chunks)


def sparse_weights(x, layout):
    """``F.linear(x, W, bias)`` of a contiguous float32 (B, M) CPU tensor from the layer's
    stored non-zero weights alone: (B, N)."""
    batch = x.shape[0]
    out = x.new_empty(batch, layout.n_out)
    tiles = -(-batch // TILE)
    args = (x.numpy(), layout.starts, layout.columns, layout.values,
            layout.bias[:layout.n_out], out.numpy())
    run_rows(_sparse_weight_tiles, _sparse_weight_tiles_chunks, args, tiles,
             min(tiles, chunk_count(x)))
    return out
