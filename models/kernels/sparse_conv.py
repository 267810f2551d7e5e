"""Convolution plus 2x2 max pooling from the non-background inputs alone, for inference.
Compiled with numba. Entries: ``conv_pool(x, offsets, layout, winners=None)``, and
``conv_pair(x, first, second)`` for a first layer and the layer behind it in one call;
``background(x)`` and ``nonzero_fraction(x)`` say how sparse an input is.

For each sample b the kernel computes

    pooled[b, o, i, j] = max over the 2x2 window of  bias[o] + offsets[b] * sum(W[o])
                             + sum over inputs with x != offsets[b] of (x - offsets[b]) * W

which is ``max_pool2d(conv2d(x, W, bias), 2)``: a stride-1, unpadded convolution sums every
input of a window, and a constant input c contributes c * sum(W[o]) to every output. The
offset is the sample's background: 0 behind k-winners or ReLU (their losers are 0), the
sample's minimum for a network's input (an MNIST digit's background pixels, about 80% of a
clean image, all hold the minimum -0.4242). Only the other inputs are visited.

Two loop orders, by the number of input channels C (the same sums, added in other orders):

- One channel (a network's first layer): the outputs are taken in register blocks of two
  output rows by four columns (two pooled outputs) by 32 channels, sixteen 16-lane
  accumulators. For each kernel row di a block adds the kernel row's taps (di, 0 .. KW - 1)
  for both output rows at once, each tap's 32 weights loaded once for the block's 8 inputs,
  unless both input rows' 4 + KW - 1 columns under the block are background (one bit per
  column, a 64-bit word per row); the block is then pooled from its registers. Skipping
  whole kernel rows adds the same sums in the same order as visiting only the
  non-background pixels (a background pixel adds exactly 0), bit for bit, with no branch
  per pixel: on clean MNIST half of the multiply-adds remain (51% of Sparse CNN-2's). It
  replaced a loop that added each non-background pixel's products into a channels-last
  accumulator in memory (a load and a store per 16-lane product): Sparse CNN-2's first
  layer, 256 real test images, one thread, 6.4-7.1 to 4.3-4.7 us per image, one process
  alternating; oneDNN's convolution and pooling took 17-27 us at every noise level of the
  sweep, so the engine's first layers take this kernel whatever the input's density. The
  tap loop's trip count is fixed: trimming it to the taps that reach a non-background
  input cut the products by a quarter and saved nothing (the varying exit mispredicts).
- Several channels (behind k-winners: Sparse CNN-2's 600 of 4,608): which channels of a
  position hold a non-zero input is one bit each (a 64-bit word per 64 channels), set by a
  vectorised pass over each channel's row; the set bits are then listed once in position
  order (each value with its weight offset). Output by output (``_by_outputs``), 64 output
  channels in four 16-lane accumulators, each kernel row's five taps take one loop over the
  entries of the five positions under them, which lie together in the list: one load and
  store of the accumulators per output and kernel row, and one loop exit. On a 2-core Zen 4
  VM (AVX-512 on 256-bit units), Sparse CNN-2's second layer, 256 real test images, one
  thread, six alternating profiles of 5 rounds: 21.3-23.4 us per image (median 22.3) against
  22.6-24.6 (23.4) for the passes it replaced, one per input position and kernel row adding
  the position's channels to the five outputs it reaches (twenty accumulators loaded and
  stored for about four channels each; 13.3 us on the faster AVX-512 VM of
  docs/performance.md, where this loop has not been timed). Over 32 channels at a time, two
  walks (the row's weights in L1), it took 27.7-30.5; with the five kernel rows in one loop
  per output (the accumulators stored once, the 200 KB of weights from L2) 30.1-30.6; two
  interleaved sets of accumulators (four FMA chains each) changed nothing.

Without AVX-512 (``simd.AVX512`` false: AVX2 alone, where a 16-lane vector takes two of
16 registers) both kernels take smaller register blocks, the same sums in the same order,
bit for bit (tested on every machine): the first layer's blocks are 2 x 2 outputs x 16
channels (4 vectors, not 16), and the second layer's walks go over 32 output channels (2
vectors, not 4). On a 2-core Zen 3 VM with AVX2, Sparse CNN-2, 256 real test images, one
thread, one process alternating: the first layer 25-46 to 15-22 us per image (median
per-round ratio 1.38x, 1.68x and 2.03x over three runs, 7 rounds each: this VM's speed
drifts), the second 52.9 (passes per input position) to 35.3 (1.52x; by outputs, 32
channels; results/reference/inference_avx2 for the whole engine).

Several channels: the accumulator is channels-last (Ho, Wo, O padded to a multiple of 16).
Both pool into a channels-last buffer (O padded to 16s, or 32s for one channel), keeping the
first maximum of each window and a NaN, as ``F.max_pool2d`` and models/kernels/pool.py do,
and write channel-major (B, O, Ho // 2, Wo // 2), the layout the k-winners kernel reads.
Equal to ``F.max_pool2d(F.conv2d(x, W, bias), 2)`` to float32 rounding, not bit for bit.

With the layer's k-winners given (``winners``), each sample's pooled outputs go to a
one-sample buffer and the k-winners kernel (models/kernels/kwinners.py) writes the sample's
output from it at once, instead of the whole batch being pooled to memory and read back: the
same output bit for bit. ``conv_pair`` goes one step further for a first layer and the
layer behind it (Sparse CNN-2's two convolutions): each sample runs through both, so the
first layer's winners (18 KB) never leave the L1 cache. The conv blocks of Sparse CNN-2 at
batch 256, 4,096 real test images, one thread: 27.6 to 26.4 us per image for the whole
engine, one process alternating, bit for bit (pooled to memory and read back, the first
layer's k-winners had taken 1.9 us more per image in the forward pass than on their own).
"""

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from models.kernels.kwinners import _forward_rows
from models.kernels.rows import chunk_count, run_rows
from models.kernels.simd import (AVX512, LANES, aligned, aligned_empty, item, vfma, vload,
                                 vmax_first, vstore, vtranspose16)

BLOCK = 4 * LANES  # output channels accumulated in registers at once (several channels)
GROUP = 2 * LANES  # output channels of one register block (one channel)
COLUMNS = 4  # outputs per row of a register block (one channel): two pooled columns


class ConvLayout:
    """A convolution's weights (O, C, KH, KW) and bias (O,) (float32 CPU tensors) laid out
    for the kernels as numpy arrays, output channels padded with zeros to a multiple of
    LANES (of GROUP for one input channel, whose kernel takes them 32 at a time)."""

    def __init__(self, weight, bias):
        out_c, in_c, kh, kw = weight.shape
        step = GROUP if in_c == 1 else LANES
        padded = -(-out_c // step) * step
        w = weight.new_zeros(padded, in_c, kh, kw)
        w[:out_c] = weight
        self.in_channels, self.out_channels, self.kernel = in_c, out_c, (kh, kw)
        self.bias = aligned(np.pad(bias.numpy(), (0, padded - out_c)))
        self.w_sum = aligned(w.sum((1, 2, 3)))
        if in_c == 1:  # W[o, 0, di, dj] at [o // 32, di, dj, o % 32]
            self.w_block = aligned(w.reshape(padded // GROUP, GROUP, kh, kw).permute(0, 2, 3, 1))
        else:  # W[o, c, di, dj] at [((di * kw + dj) * C + c) * padded + o]
            self.w_taps = aligned(w.permute(2, 3, 1, 0).reshape(-1))

@numba.njit(nogil=True, cache=True, boundscheck=False)
def _background_rows(flat, offsets, fractions, first, last):
    """offsets[b] <- min of row b (``_minimum``, as the one-channel kernel finds it);
    fractions[b] <- share of its values != that minimum."""
    n = flat.shape[1]
    for b in range(first, last):
        row = flat[b]
        low = _minimum(row)
        count = 0
        for t in range(n):
            count += row[t] != low
        offsets[b], fractions[b] = low, count / n


@numba.njit(parallel=True, nogil=True, cache=True)
def _background_rows_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _background_rows(*args, c * rows // chunks, (c + 1) * rows // chunks)


def background(x):
    """(per-sample minimum (B,) float32 numpy, the share of all values above their
    sample's minimum) of ``x``."""
    flat = x.reshape(x.shape[0], -1).numpy()
    offsets = np.empty(flat.shape[0], np.float32)
    fractions = np.empty(flat.shape[0], np.float64)
    run_rows(_background_rows, _background_rows_chunks, (flat, offsets, fractions),
             flat.shape[0], chunk_count(x))
    return offsets, float(fractions.sum()) / len(fractions)


@numba.njit(nogil=True, cache=True)
def _count_nonzeros(flat):
    count = 0
    for v in flat:
        count += v != 0
    return count


def nonzero_fraction(x):
    """The fraction of non-zero values of a contiguous float32 tensor (one pass)."""
    return _count_nonzeros(x.reshape(-1).numpy()) / max(x.numel(), 1)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _start(acc, bias, w_sum, offset, positions, padded):
    """Every output's accumulator <- bias + offset * sum(W[o])."""
    for o in range(0, padded, LANES):
        value = vfma(vload(bias, o), offset, vload(w_sum, o))
        for p in range(positions):
            vstore(acc, p * padded + o, value)


@numba.njit(nogil=True, cache=True)
def _winners_start(out, k, hint):
    """The k-winners' state for one kernel call (one per parallel slice): a one-sample
    buffer of the pooled outputs, a copy of the threshold search's first probe, and the
    losers and counts that eval mode leaves unwritten."""
    size = out[0].size if k >= 0 else 0
    return aligned_empty(size), hint.copy(), np.zeros((0, 0), np.bool_), np.zeros(1)


@numba.njit(nogil=True, cache=True)
def _k_winners_into(dest, boost, group, k, state):
    """dest (1-d) <- the k-winners of the pooled outputs ``state[0]``."""
    buf, guess, losers, active = state
    n = buf.shape[0]
    _forward_rows(buf.reshape((1, n)), boost, group, k, 0, 1, dest.reshape((1, n)), losers,
                  active, False, guess)


@numba.njit(nogil=True, cache=True)
def _pooled_to(out, b, k, state):
    """Where sample b's pooled outputs go: out[b] itself, or with k-winners to follow (k >= 0)
    the one-sample buffer ``_finish_sample`` takes them from."""
    return out[b].reshape(-1) if k < 0 else state[0]


@numba.njit(nogil=True, cache=True)
def _finish_sample(out, b, boost, group, k, state, hint, last):
    """With k-winners (k >= 0): out[b] <- those of the pooled buffer; after a call's last
    sample of the batch, its threshold as the first probe of the next call."""
    if k >= 0:
        _k_winners_into(out[b].reshape(-1), boost, group, k, state)
        if b == last - 1 and last == out.shape[0]:
            hint[0] = state[1][0]


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _pool(acc, wo, padded, pooled, out):
    """out (O * P, channel-major, P = (Ho // 2) * (Wo // 2)) <- 2x2 max pooling of the
    channels-last accumulator acc (Ho, Wo, padded), through ``pooled`` (P * padded)."""
    wp = wo // 2
    positions = pooled.shape[0] // padded
    row = wo * padded
    for p in range(positions):
        i = p // wp
        j = p - i * wp
        r0, r1 = 2 * i * row, (2 * i + 1) * row
        c0, c1 = 2 * j * padded, (2 * j + 1) * padded
        for o in range(0, padded, LANES):  # row-major window order: the first maximum
            best = vload(acc, r0 + c0 + o)
            best = vmax_first(best, vload(acc, r0 + c1 + o))
            best = vmax_first(best, vload(acc, r1 + c0 + o))
            best = vmax_first(best, vload(acc, r1 + c1 + o))
            vstore(pooled, p * padded + o, best)
    _channel_major(pooled, padded, out)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _channel_major(pooled, padded, out):
    """out (O * P, channel-major) <- pooled (P * padded, channels-last)."""
    positions = pooled.shape[0] // padded
    channels = out.shape[0] // positions
    whole = positions - positions % LANES
    for p0 in range(0, whole, LANES):  # to channel-major, 16 x 16 blocks at a time
        for o0 in range(0, channels, LANES):
            vtranspose16(pooled, p0 * padded + o0, padded, out, o0 * positions + p0, positions,
                         min(LANES, channels - o0))
    for o in range(channels):  # the positions left over
        for p in range(whole, positions):
            out[o * positions + p] = pooled[p * padded + o]


@numba.njit(nogil=True, cache=True, inline="always")
def _fma4(a, v0, v1, v2, v3, w0, w1):
    """Four adjacent outputs' two-vector accumulators a (8 vectors) plus their inputs v0 .. v3
    times one tap's weights (w0, w1). (Vectors and scalars only: an array argument would
    cost a reference count update, a call that spills every vector, per use.)"""
    return (vfma(a[0], v0, w0), vfma(a[1], v0, w1), vfma(a[2], v1, w0), vfma(a[3], v1, w1),
            vfma(a[4], v2, w0), vfma(a[5], v2, w1), vfma(a[6], v3, w0), vfma(a[7], v3, w1))


@numba.njit(nogil=True, cache=True, inline="always")
def _max4(a, b, c):
    """The 2 x 2 window's maximum of two-vector outputs: (a[c:c + 2], a[c + 2:c + 4]) in row
    0, the same of b in row 1, in row-major order (the first maximum)."""
    return (vmax_first(vmax_first(vmax_first(a[c], a[c + 2]), b[c]), b[c + 2]),
            vmax_first(vmax_first(vmax_first(a[c + 1], a[c + 3]), b[c + 1]), b[c + 3]))


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _minimum(values):
    """min(values), in eight interleaved running minima (one running minimum waits on each
    comparison before the next): ``background`` and the one-channel kernel both take it."""
    n = values.shape[0]
    lows = np.full(8, values[0], np.float32)
    for t in range(0, n - n % 8, 8):
        for u in range(8):
            lows[u] = min(lows[u], values[t + u])
    low = values[0]
    for u in range(8):
        low = min(low, lows[u])
    for t in range(n - n % 8, n):
        low = min(low, values[t])
    return low


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _active_blocks(img, stride, kw, active):
    """active[r, k] <- whether row r of img (rows, stride), stride <= 64, holds a non-zero
    input of block k: one of its columns 4k .. 4k + kw + 2 (block k's outputs are columns
    4k .. 4k + 3)."""
    span = np.uint64((1 << (COLUMNS + kw - 1)) - 1)
    for r in range(active.shape[0]):
        bits = np.uint64(0)
        for c in range(stride):
            bits |= np.uint64(img[r * stride + c] != 0.0) << np.uint64(c)
        for k in range(active.shape[1]):
            active[r, k] = (bits >> np.uint64(COLUMNS * k)) & span != 0


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _one_channel_sample(image, height, width, offset, weights, kh, kw, bias, w_sum, img, active,
                        pooled, dest, wide=AVX512):
    """dest (O, Ho // 2, Wo // 2 flat) <- one sample's pooled convolution: image (H * W) its
    one channel, weights the layout's w_block flat, img, active and pooled the kernel's
    buffers. ``wide``: register blocks of 2 x 4 outputs x 32 channels (16 vectors: AVX-512's
    registers), else of 2 x 2 x 16 (4 vectors: AVX2's 16 registers hold them as 8); the
    same sums in the same order either way."""
    padded = bias.shape[0]
    groups = padded // GROUP
    ho, wo = height - kh + 1, width - kw + 1
    hp, wq = ho // 2, wo // 2  # pooled rows and columns
    blocks = -(-wq // 2)  # register blocks per output row pair
    stride = blocks * COLUMNS + kw - 1  # the padded image's row length (>= the used columns)
    used = min(width, stride)
    if stride == width:  # the image less its background in one loop: 0.04 us per MNIST
        for t in range(height * width):  # image, where 28 loops of 28 values took 0.83
            img[t] = image[t] - offset
    else:  # zero-padded on the right
        for r in range(height):
            for c in range(used):
                img[r * stride + c] = image[r * width + c] - offset
            for c in range(used, stride):
                img[r * stride + c] = 0.0
    if stride <= 64:
        _active_blocks(img, stride, kw, active)
    else:  # wider than one word of column bits: every block (zeros add nothing)
        active[:] = True
    if not wide:
        _one_channel_narrow(img, stride, active, weights, kh, kw, bias, w_sum, offset, hp, wq,
                            blocks, pooled)
        _channel_major(pooled, padded, dest)
        return
    for g in range(groups):
        o = g * GROUP
        s0 = vfma(vload(bias, o), offset, vload(w_sum, o))
        s1 = vfma(vload(bias, o + LANES), offset, vload(w_sum, o + LANES))
        start = (s0, s1, s0, s1, s0, s1, s0, s1)
        base = g * kh * kw * GROUP
        for i in range(hp):
            for m in range(blocks):
                a, e = start, start  # output rows 2i and 2i + 1, columns 4m .. 4m + 3
                for di in range(kh):
                    r = 2 * i + di
                    if not (active[r, m] or active[r + 1, m]):
                        continue
                    p, w = r * stride + m * COLUMNS, base + di * kw * GROUP
                    for dj in range(kw):  # a fixed count: a varying one mispredicts
                        w0 = vload(weights, w + dj * GROUP)
                        w1 = vload(weights, w + dj * GROUP + LANES)
                        q = p + dj
                        a = _fma4(a, item(img, q), item(img, q + 1), item(img, q + 2),
                                  item(img, q + 3), w0, w1)
                        q += stride
                        e = _fma4(e, item(img, q), item(img, q + 1), item(img, q + 2),
                                  item(img, q + 3), w0, w1)
                at = (i * wq + 2 * m) * padded + o
                m0, m1 = _max4(a, e, 0)
                vstore(pooled, at, m0)
                vstore(pooled, at + LANES, m1)
                if 2 * m + 1 < wq:
                    m0, m1 = _max4(a, e, 4)
                    vstore(pooled, at + padded, m0)
                    vstore(pooled, at + padded + LANES, m1)
    _channel_major(pooled, padded, dest)


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _one_channel_narrow(img, stride, active, weights, kh, kw, bias, w_sum, offset, hp, wq,
                        blocks, pooled):
    """_one_channel_sample's blocks without AVX-512: for each 16 channels, 2 x 2 outputs
    (one pooled output) at a time, with the same kernel rows skipped (the 4-column blocks'
    bits) and the same order of sums for each output."""
    padded = bias.shape[0]
    for g in range(padded // GROUP):
        for half in range(2):
            o = g * GROUP + half * LANES
            s = vfma(vload(bias, o), offset, vload(w_sum, o))
            base = g * kh * kw * GROUP + half * LANES
            for i in range(hp):
                for j in range(wq):  # pooled column j: output columns 2j, 2j + 1
                    m = j // 2
                    a0, a1, e0, e1 = s, s, s, s  # output rows 2i and 2i + 1
                    for di in range(kh):
                        r = 2 * i + di
                        if not (active[r, m] or active[r + 1, m]):
                            continue
                        p, w = r * stride + 2 * j, base + di * kw * GROUP
                        for dj in range(kw):
                            wv = vload(weights, w + dj * GROUP)
                            q = p + dj
                            a0, a1 = vfma(a0, item(img, q), wv), vfma(a1, item(img, q + 1), wv)
                            q += stride
                            e0, e1 = vfma(e0, item(img, q), wv), vfma(e1, item(img, q + 1), wv)
                    vstore(pooled, (i * wq + j) * padded + o,
                           vmax_first(vmax_first(vmax_first(a0, a1), e0), e1))


@numba.njit(nogil=True, cache=True)
def _one_channel_buffers(height, width, kh, kw, padded):
    """The one-channel kernel's buffers for one call: img, active, pooled."""
    ho, wo = height - kh + 1, width - kw + 1
    blocks = -(-(wo // 2) // 2)
    stride = blocks * COLUMNS + kw - 1
    return (aligned_empty(height * stride), np.empty((height, blocks), np.bool_),
            aligned_empty((ho // 2) * (wo // 2) * padded))


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _one_channel_blocks(x, offsets, w_block, bias, w_sum, out, boost, group, k, hint,
                        first, last):
    """out[b] for b in [first, last): one input channel, x (B, 1, H, W), by register blocks
    (see the module's docstring)."""
    height, width = x.shape[2], x.shape[3]
    kh, kw = w_block.shape[1], w_block.shape[2]
    weights = w_block.reshape(-1)
    img, active, pooled = _one_channel_buffers(height, width, kh, kw, bias.shape[0])
    state = _winners_start(out, k, hint)
    for b in range(first, last):
        image = x[b, 0].reshape(-1)
        offset = offsets[b] if offsets.shape[0] else _minimum(image)
        _one_channel_sample(image, height, width, offset, weights, kh, kw, bias, w_sum, img,
                            active, pooled, _pooled_to(out, b, k, state))
        _finish_sample(out, b, boost, group, k, state, hint, last)


@numba.njit(parallel=True, nogil=True, cache=True)
def _one_channel_blocks_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _one_channel_blocks(*args, c * rows // chunks, (c + 1) * rows // chunks)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _channel_masks(image, offset, masks, words):
    """masks[p * words + c // 64] has bit c % 64 set where image[c, p] != offset, for the
    image (C, P): one pass per channel over its contiguous row, where listing the values one
    by one in position order cost 3 us per Sparse CNN-2 image. With one mask word per
    position (64 channels or fewer) the masks have a unit stride, and LLVM vectorises the
    pass (eight positions per AVX-512 instruction); the strided loop of several words it
    does not: setting them took about 2.9 of the 13.7 us per image of Sparse CNN-2's second
    layer that way; the kernel takes 12.0 us this way (256 real test images, one process
    alternating)."""
    channels, positions = image.shape
    masks[:] = 0
    if words == 1:
        for c in range(channels):
            bit, row = np.uint64(1) << np.uint64(c), image[c]
            for p in range(positions):
                masks[p] |= bit * np.uint64(row[p] != offset)
        return
    for c in range(channels):
        bit, row, word = np.uint64(1) << np.uint64(c % 64), image[c], c // 64
        for p in range(positions):
            masks[p * words + word] |= bit * np.uint64(row[p] != offset)


@numba.njit(nogil=True, cache=True, inline="always")
def _pop_channel(m, word):
    """(the lowest channel set in word ``word``'s bits ``m``, ``m`` without it)."""
    return word * 64 + np.int64(trailing_zeros(m)), m & (m - np.uint64(1))


@numba.njit(nogil=True, cache=True, inline="always")
def _fma_entry(a0, a1, a2, a3, v, w_taps, w):
    """The four accumulators plus v times the 64 weights at w_taps[w:]."""
    return (vfma(a0, v, vload(w_taps, w)), vfma(a1, v, vload(w_taps, w + LANES)),
            vfma(a2, v, vload(w_taps, w + 2 * LANES)), vfma(a3, v, vload(w_taps, w + 3 * LANES)))


@numba.njit(nogil=True, cache=True, inline="always")
def _turn_entry(values, entries, w0, w, t, end):
    """(value, weight offset) of entry t of a four-entry turn: past the pass's end (t >= end)
    the value 0 and the turn's first weight offset ``w``, so that it adds a zero."""
    if t < end:
        return item(values, t), w0 + item(entries, t)
    return np.float32(0.0), w


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _by_outputs(image, width, offset, w_taps, channels, kh, kw, ho, wo, acc, masks, words,
                start, entries, values, wide):
    """acc += the products of the inputs != offset, output by output. The inputs are listed
    once in position order, channels ascending within a position (``values``: input -
    offset; ``entries``: the weight offset (column * C + c) * padded; ``start[p]``: position
    p's first entry). For each block of output channels (64 with ``wide``, four 16-lane
    accumulators; else 32, two) and kernel row di, output (i, j) takes the row's KW taps in
    one loop over the entries of positions (i + di, j .. j + KW - 1), which lie together:
    its accumulators stay in registers for the loop, with one load and store per output and
    kernel row. The loop takes four entries a turn, those past the pass's end as the value 0
    times a weight already read (adding a zero: the same sums, but for the sign of an
    accumulator that is exactly -0), so that a pass has one loop exit to mispredict, not
    LLVM's two (a remainder loop, then a loop unrolled four times). Sparse CNN-2's products,
    256 real test images, Zen 4: 18.0-18.5 to 16.8-17.4 us per image with four accumulators
    (benchmarks/bench_cpu_limits.py), 23.2-23.5 to 20.8 with two (the AVX2 route's walks,
    timed on the same VM). ``entries`` and ``values`` hold three more values than a layer's
    inputs for the last turn's reads. The row's weights (KW x C x 64 values, 40 KB for Sparse
    CNN-2) come from L1 and L2. Each output adds its products kernel row by kernel row, tap
    by tap, channel by channel, whatever the block: the sums in the same order either way,
    bit for bit."""
    padded = acc.shape[0] // (ho * wo)
    positions = start.shape[0] - 1
    n = 0
    for p in range(positions):
        start[p] = n
        column = p % width
        for word in range(words):
            m = masks[p * words + word]
            while m:
                c, m = _pop_channel(m, word)
                values[n] = item(image, c * positions + p) - offset
                entries[n] = (column * channels + c) * padded
                n += 1
    start[positions] = n
    step = channels * padded  # from one tap's weights to the next
    o = 0
    while o < padded:  # 64 or 32 output channels at a time (then 16 for the rest)
        four = wide and o + BLOCK <= padded
        two = o + GROUP <= padded
        for di in range(kh):
            for i in range(ho):
                for j in range(wo):
                    a = (i * wo + j) * padded + o
                    q = (i + di) * width + j
                    w0 = di * kw * step - j * step + o  # + entries[t]: tap (di, column - j)
                    if four:
                        a0, a1 = vload(acc, a), vload(acc, a + LANES)
                        a2, a3 = vload(acc, a + 2 * LANES), vload(acc, a + 3 * LANES)
                        t, end = item(start, q), item(start, q + kw)
                        while t < end:  # four entries a turn, one loop exit
                            w = w0 + item(entries, t)
                            a0, a1, a2, a3 = _fma_entry(a0, a1, a2, a3, item(values, t),
                                                        w_taps, w)
                            for u in range(1, 4):
                                v, wu = _turn_entry(values, entries, w0, w, t + u, end)
                                a0, a1, a2, a3 = _fma_entry(a0, a1, a2, a3, v, w_taps, wu)
                            t += 4
                        vstore(acc, a, a0)
                        vstore(acc, a + LANES, a1)
                        vstore(acc, a + 2 * LANES, a2)
                        vstore(acc, a + 3 * LANES, a3)
                    elif two:  # the same turns, two accumulators
                        a0, a1 = vload(acc, a), vload(acc, a + LANES)
                        t, end = item(start, q), item(start, q + kw)
                        while t < end:
                            w = w0 + item(entries, t)
                            v = item(values, t)
                            a0 = vfma(a0, v, vload(w_taps, w))
                            a1 = vfma(a1, v, vload(w_taps, w + LANES))
                            for u in range(1, 4):
                                v, wu = _turn_entry(values, entries, w0, w, t + u, end)
                                a0 = vfma(a0, v, vload(w_taps, wu))
                                a1 = vfma(a1, v, vload(w_taps, wu + LANES))
                            t += 4
                        vstore(acc, a, a0)
                        vstore(acc, a + LANES, a1)
                    else:
                        a0 = vload(acc, a)
                        for t in range(start[q], start[q + kw]):
                            a0 = vfma(a0, values[t], vload(w_taps, w0 + entries[t]))
                        vstore(acc, a, a0)
        o += BLOCK if four else GROUP if two else LANES


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _channels_sample(image, height, width, offset, w_taps, bias, w_sum, kh, kw, acc, pooled,
                     masks, start, entries, values, dest, wide=AVX512):
    """dest (O, Ho // 2, Wo // 2 flat) <- one sample's pooled convolution: image (C, H * W),
    acc, pooled, masks, start, entries and values the kernel's buffers. ``wide``: 64
    output channels per walk (4 vectors in registers), else 32 (2: with AVX2 alone a vector
    takes two of 16 registers); the same sums in the same order either way."""
    channels = image.shape[0]
    padded = bias.shape[0]
    ho, wo = height - kh + 1, width - kw + 1
    words = -(-channels // 64)
    _start(acc, bias, w_sum, offset, ho * wo, padded)
    _channel_masks(image, offset, masks, words)
    _by_outputs(image.reshape(-1), width, offset, w_taps, channels, kh, kw, ho, wo, acc, masks,
                words, start, entries, values, wide)
    _pool(acc, wo, padded, pooled, dest)


@numba.njit(nogil=True, cache=True)
def _channels_buffers(channels, height, width, kh, kw, padded):
    """The several-channel kernel's buffers for one call: acc, pooled, masks, start,
    entries, values (``_by_outputs``)."""
    ho, wo = height - kh + 1, width - kw + 1
    positions = height * width
    return (aligned_empty(ho * wo * padded), aligned_empty((ho // 2) * (wo // 2) * padded),
            np.empty(positions * -(-channels // 64), np.uint64),
            np.empty(positions + 1, np.int64), np.empty(channels * positions + 3, np.int64),
            aligned_empty(channels * positions + 3))


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _channels_samples(x, offsets, w_taps, bias, w_sum, kh, kw, out, boost, group, k,
                      hint, first, last):
    """out[b] for b in [first, last): several input channels, x (B, C, H, W)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    acc, pooled, masks, start, entries, values = _channels_buffers(channels, height, width, kh,
                                                                   kw, bias.shape[0])
    state = _winners_start(out, k, hint)
    for b in range(first, last):
        image = x[b].reshape(channels, height * width)
        _channels_sample(image, height, width, offsets[b], w_taps, bias, w_sum, kh, kw, acc,
                         pooled, masks, start, entries, values, _pooled_to(out, b, k, state))
        _finish_sample(out, b, boost, group, k, state, hint, last)


@numba.njit(parallel=True, nogil=True, cache=True)
def _channels_samples_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _channels_samples(*args, c * rows // chunks, (c + 1) * rows // chunks)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _pair_samples(x, w_block, bias1, w_sum1, boost1, group1, k1, hint1, w_taps, bias2,
                  w_sum2, kh2, kw2, out, boost2, group2, k2, hint2, first, last):
    """out[b] for b in [first, last): x (B, 1, H, W) through the one-channel convolution,
    pooling and k-winners, then the several-channel convolution, pooling and k-winners,
    one sample at a time: the first layer's output stays in the L1 cache."""
    height, width = x.shape[2], x.shape[3]
    kh, kw = w_block.shape[1], w_block.shape[2]
    weights = w_block.reshape(-1)
    channels = boost1.shape[0]
    h2, w2 = (height - kh + 1) // 2, (width - kw + 1) // 2
    img, active, pooled1 = _one_channel_buffers(height, width, kh, kw, bias1.shape[0])
    acc, pooled2, masks, start, entries, values = _channels_buffers(channels, h2, w2, kh2, kw2,
                                                                    bias2.shape[0])
    middle = aligned_empty(channels * h2 * w2)  # the first layer's k-winners, one sample
    state1 = _winners_start(middle.reshape((1, middle.shape[0])), k1, hint1)
    state2 = _winners_start(out, k2, hint2)
    image2 = middle.reshape((channels, h2 * w2))
    for b in range(first, last):
        image = x[b, 0].reshape(-1)
        _one_channel_sample(image, height, width, _minimum(image), weights, kh, kw, bias1,
                            w_sum1, img, active, pooled1, state1[0])
        _k_winners_into(middle, boost1, group1, k1, state1)
        _channels_sample(image2, h2, w2, np.float32(0.0), w_taps, bias2, w_sum2, kh2, kw2,
                         acc, pooled2, masks, start, entries, values, state2[0])
        _k_winners_into(out[b].reshape(-1), boost2, group2, k2, state2)
    if last == out.shape[0]:  # the last slice's answers, for the next call
        hint1[0], hint2[0] = state1[1][0], state2[1][0]


@numba.njit(parallel=True, nogil=True, cache=True)
def _pair_samples_chunks(args, rows, chunks):  # run_rows: in parallel
    for c in numba.prange(chunks):
        _pair_samples(*args, c * rows // chunks, (c + 1) * rows // chunks)


def conv_pair(x, first, second):
    """Two conv blocks in one kernel call, one sample at a time: ``first`` = (layout,
    (boost, k, hint)) of a one-channel convolution whose background is each sample's
    minimum, ``second`` the same of the several-channel convolution that takes its
    k-winners (background 0). The output of ``conv_pool(conv_pool(x, None, *first), 0,
    *second)``, bit for bit, without writing the first layer's output out (Sparse CNN-2:
    18 KB per image, read back from L3 or memory when whole batches go layer by layer)."""
    (one, (boost1, k1, hint1)), (two, (boost2, k2, hint2)) = first, second
    b, c, h, w = x.shape
    kh, kw = one.kernel
    h2, w2 = (h - kh + 1) // 2, (w - kw + 1) // 2
    kh2, kw2 = two.kernel
    if c != 1 or two.in_channels != one.out_channels or len(boost1) != one.out_channels or \
            len(boost2) != two.out_channels or min(h2, w2) < max(kh2, kw2) + 1:
        raise ValueError(f"conv_pair: layers {one.in_channels}->{one.out_channels}, "
                         f"{two.in_channels}->{two.out_channels} do not chain on {tuple(x.shape)}")
    out = x.new_empty(b, two.out_channels, (h2 - kh2 + 1) // 2, (w2 - kw2 + 1) // 2)
    args = (x.numpy(), one.w_block, one.bias, one.w_sum, boost1, h2 * w2, int(k1),
            hint1, two.w_taps, two.bias, two.w_sum, kh2, kw2, out.numpy(), boost2,
            out[0, 0].numel(), int(k2), hint2)
    run_rows(_pair_samples, _pair_samples_chunks, args, b, chunk_count(x))
    return out


def conv_pool(x, offsets, layout, winners=None):
    """``F.max_pool2d(F.conv2d(x, W, bias), 2)`` of a contiguous float32 (B, C, H, W) CPU
    tensor from its values != offsets[b] alone (``offsets`` (B,) float32 numpy, or None: each
    sample's minimum, as ``background`` finds it, found by the kernel for one channel). With
    ``winners`` = (boost, k, hint), as models/kernels/kwinners.py's ``k_winners_eval`` takes
    them (one boost factor per output channel), the k-winners of each sample's pooled
    outputs instead, taken as soon as they are pooled: the same output as
    ``k_winners_eval`` of the pooled batch, without writing and reading it back (Sparse
    CNN-2's first layer: 4.7 MB each way at batch 256)."""
    b, c, h, w = x.shape
    kh, kw = layout.kernel
    ho, wo = h - kh + 1, w - kw + 1
    out = x.new_empty(b, layout.out_channels, ho // 2, wo // 2)
    if offsets is None:
        offsets = _FIND_MINIMUM if c == 1 else background(x)[0]
    if winners is None:
        fused, hint = (_NO_BOOST, 1, -1), _NO_HINT
    else:
        boost, k, hint = winners
        if len(boost) != layout.out_channels:
            raise ValueError(f"conv_pool: {len(boost)} boost factors for "
                             f"{layout.out_channels} channels")
        fused = (boost, (ho // 2) * (wo // 2), int(k))
    if c == 1:
        kernel, chunked = _one_channel_blocks, _one_channel_blocks_chunks
        weights = layout.w_block, layout.bias, layout.w_sum
    else:
        kernel, chunked = _channels_samples, _channels_samples_chunks
        weights = layout.w_taps, layout.bias, layout.w_sum, kh, kw
    args = (x.numpy(), offsets) + weights + (out.numpy(),) + fused + (hint,)
    run_rows(kernel, chunked, args, b, chunk_count(x))
    return out


_NO_BOOST, _NO_HINT = np.ones(1, np.float32), np.full(1, -1, np.int64)
_FIND_MINIMUM = np.zeros(0, np.float32)  # no offsets: the one-channel kernel finds each
