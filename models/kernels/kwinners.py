"""k-winners on the CPU, compiled with numba: exact top-k by radix selection.

``torch.topk`` on CPU copies each row into (value, index) pairs and runs ``std::nth_element``;
on fresh activations every comparison is a coin flip for the branch predictor, so selecting 400
of 4,608 values costs about 40 us per row here. These kernels select the same winners with
counting instead of comparing, in a fixed number of passes:

1. Each boosted score ``x_j * b_g`` becomes a uint32 key that orders like the float (flip the
   sign bit of a positive number, all bits of a negative one).
2. A histogram of the keys' top 11 bits finds the bin that holds the k-th largest key: every
   key in a higher bin wins, keys in that bin are candidates.
3. The candidates (a few percent of the row) are resolved the same way on the remaining 21
   bits, 8 at a time. Keys still equal after all 32 bits are tied: the lowest indices win.

One call writes the layer's output (the raw values at the winners, zeros elsewhere), marks
the losers for the backward pass (which zeroes the gradient there) and, in training, counts
the positive winners per duty-cycle group and updates the duty cycles in place, with the
arithmetic of ``models.kwinners``' ``_update_duty_cycle``: one call instead of a dozen
tensor ops. The entry is ``k_winners(x, layer, boost, group, k)``; ``k_winners_eval`` is its
eval-mode forward pass alone.
"""

import numba
import numpy as np
import torch

from models.kernels.rows import chunk_count

_TOP_BITS = 11  # first radix pass: bits 31..21 of the key
_BINS = 1 << _TOP_BITS
_LANES = 4  # interleaved histograms, so that runs of equal bins do not serialise increments
_REFINE_BITS = 8  # later passes, over the few candidates left


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _boosted_keys(row, boost, group, keys):
    """keys[j] <- order-preserving uint32 of float32(row[j] * boost[j // group]); returns the max."""
    scores = keys.view(np.float32)
    if group == 1:  # a factor per unit (dense k-winners): one loop, vectorised
        for j in range(scores.shape[0]):
            scores[j] = row[j] * boost[j]
    else:
        for g in range(boost.shape[0]):
            factor = boost[g]
            start = g * group
            for t in range(group):
                scores[start + t] = row[start + t] * factor
    largest = np.uint32(0)
    for j in range(keys.shape[0]):
        u = keys[j]
        # Arithmetic shift of the sign bit: all ones for a negative float, else zero.
        u ^= np.uint32(0x80000000) | np.uint32(np.int32(u) >> np.int32(31))
        keys[j] = u
        largest = max(largest, u)
    return largest


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _select_row(keys, largest, k, winners, hist, cand, cand2):
    """winners[:k] <- indices of the k largest ``keys`` (ties: lowest indices)."""
    n = keys.shape[0]
    shift = np.uint32(32 - _TOP_BITS)
    hist[:] = 0
    for j in range(n):
        hist[(j & (_LANES - 1)) * _BINS + (keys[j] >> shift)] += 1
    above = 0
    b = np.int64(largest >> shift)  # no key lies in a higher bin
    while True:
        count = 0
        for lane in range(_LANES):
            count += hist[lane * _BINS + b]
        if above + count >= k:
            break
        above += count
        b -= 1
    # Keep every index in the boundary bin or above (branch-free), then split those few.
    m = 0
    for j in range(n):
        cand[m] = j
        m += np.int64(keys[j] >> shift) >= b
    filled = 0
    boundary = 0
    for i in range(m):
        j = cand[i]
        wins = np.int64(keys[j] >> shift) > b
        winners[filled] = j  # branch-free: always written, kept only when it wins
        filled += wins
        cand2[boundary] = j
        boundary += not wins
    need = k - above
    # The boundary bin's candidates (a few percent of n) share their top bits: resolve the rest
    # of the key 8 bits at a time; candidates stay in index order, so ties go to the lowest.
    src, dst = cand2, cand
    while need < boundary and shift > 0:
        bits = min(shift, np.uint32(_REFINE_BITS))
        shift -= bits
        width = (np.uint32(1) << bits) - np.uint32(1)
        hist[: width + 1] = 0
        for i in range(boundary):
            hist[(keys[src[i]] >> shift) & width] += 1
        above = 0
        b = np.int64(width)
        while above + hist[b] < need:
            above += hist[b]
            b -= 1
        m = 0
        for i in range(boundary):
            j = src[i]
            bin_ = np.int64((keys[j] >> shift) & width)
            winners[filled] = j
            filled += bin_ > b
            dst[m] = j
            m += bin_ == b
        need -= above
        boundary = m
        src, dst = dst, src
    for i in range(need):
        winners[filled + i] = src[i]


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _forward_rows(x, boost, group, k, first, last, out, losers, active, count):
    """Rows ``first`` to ``last`` - 1: ``out`` <- x at the winners, 0 elsewhere; ``losers``
    (when it has rows) <- True but at the winners; if ``count``, add positive winners."""
    n = x.shape[1]
    keys = np.empty(n, np.uint32)
    hist = np.empty(_LANES * _BINS, np.int32)
    cand = np.empty(n + 1, np.int64)
    cand2 = np.empty(n + 1, np.int64)
    picked = np.empty(k + 1, np.int64)  # one spare slot for the branch-free writes
    mark = losers.shape[0] > 0
    zero = np.float32(0.0)
    for r in range(first, last):
        row = x[r]
        largest = _boosted_keys(row, boost, group, keys)
        _select_row(keys, largest, k, picked, hist, cand, cand2)
        out_row = out[r]
        out_row[:] = zero
        for i in range(k):
            out_row[picked[i]] = row[picked[i]]
        if mark:
            loser_row = losers[r]
            loser_row[:] = True
            for i in range(k):
                loser_row[picked[i]] = False
        if count:
            for i in range(k):
                j = picked[i]
                active[j // group] += row[j] > 0.0


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _update_duty_cycle(duty, seen, active, batch, group, period_max):
    """d <- lerp(d, active / (B * group), B / min(P, t)), t += B: torch's lerp_, in float32."""
    seen[0] += batch
    weight = np.float32(batch) / np.float32(min(seen[0], period_max))
    scale = np.float32(batch * group)
    for g in range(duty.shape[0]):
        d = duty[g]
        end = np.float32(active[g]) / scale
        if weight < 0.5:
            duty[g] = d + weight * (end - d)
        else:
            duty[g] = end - (end - d) * (np.float32(1.0) - weight)


def _forward(x, boost, group, k, out, losers, duty, seen, period_max, train, chunks=1):
    """k-winners of ``x`` (B, n) float32, scores ``x * boost`` (one factor per ``group`` entries).

    Writes ``out`` (B, n): the raw ``x`` at each row's k winners, 0 elsewhere, and, unless it
    is empty (0 rows), ``losers`` (B, n, bool): True everywhere but at the winners (what the
    backward pass needs). With ``train``, also updates the duty cycles ``duty`` (n // group,)
    and the sample count ``seen`` (1,) in place, as the layer's ``_update_duty_cycle`` does.
    With ``chunks`` > 1 the rows are split into that many parallel tasks, each counting into
    its own row of ``active`` (whole numbers: their sum does not depend on the split).
    """
    rows = x.shape[0]
    active = np.zeros((chunks, duty.shape[0]), np.float64)
    if chunks == 1:  # as rows.run_rows: from Python, one compiled kernel for both
        _forward_rows(x, boost, group, k, 0, rows, out, losers, active[0], train)
    else:
        _forward_chunks(x, boost, group, k, out, losers, active, train)
    if train:
        total = active[0] if chunks == 1 else active.sum(axis=0)
        _update_duty_cycle(duty, seen, total, rows, group, period_max)


@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def _forward_chunks(x, boost, group, k, out, losers, active, train):
    """``_forward_rows`` over ``len(active)`` slices of the rows in parallel, slice c counting
    into ``active[c]``. Only the loop is here: in a parallel function numba turns array
    allocations and sums into parallel loops too, which made this one slow to compile. (Its
    threads are numba's, OpenMP here: Python threads over the same row kernel, which compile
    nothing more, trained 0.75x as fast at 2 threads.)"""
    rows, chunks = x.shape[0], active.shape[0]
    for c in numba.prange(chunks):
        _forward_rows(x, boost, group, k, c * rows // chunks, (c + 1) * rows // chunks,
                      out, losers, active[c], train)


class _KWinnersCPU(torch.autograd.Function):
    """k-winners by the kernel: the same winners as the layer's torch ops on the boosted scores
    (exact ties go to the lowest index), the same output, and the same gradient (1 at the
    winners, 0 elsewhere)."""

    @staticmethod
    def forward(ctx, x, layer, boost, group, k):  # x (B, n)
        x = x.detach().contiguous()
        out = torch.empty_like(x)
        save = ctx.needs_input_grad[0]
        losers = torch.empty(x.shape if save else (0, 0), dtype=torch.bool)
        args = (x.numpy(), boost.detach().contiguous().numpy(), group, k, out.numpy(),
                losers.numpy(), layer.duty_cycle.numpy(), layer.samples_seen.view(1).numpy(),
                layer.duty_cycle_period, layer.training)
        _forward(*args, chunk_count(x))
        ctx.save_for_backward(losers)
        return out

    @staticmethod
    def backward(ctx, grad):
        (losers,) = ctx.saved_tensors
        return grad.masked_fill(losers, 0.0), None, None, None, None


def k_winners_eval(x, boost, group, k):
    """``k_winners``' output in eval mode, from the same kernel, without autograd, a losers
    mask or duty cycles: ``x`` (B, n) a contiguous float32 tensor, ``boost`` (n // group,)
    float32 numpy (for the inference engine, models/inference.py)."""
    out = torch.empty_like(x)
    _forward(x.numpy(), boost, group, k, out.numpy(), _NO_LOSERS, boost, _NO_COUNT, 1, False,
             chunk_count(x))
    return out


_NO_LOSERS, _NO_COUNT = np.zeros((0, 0), np.bool_), np.zeros(1, np.int64)


def k_winners(x, layer, boost, group, k):
    """The k-winners output (B, n) of ``x`` (B, n) float32: the raw ``x`` at the k largest
    scores ``x * boost`` of each row (one factor of ``boost`` per ``group`` consecutive
    entries), 0 elsewhere; its gradient is 1 at the winners. In training mode it also updates
    ``layer.duty_cycle`` and ``layer.samples_seen`` in place, as the layer's torch ops do."""
    return _KWinnersCPU.apply(x, layer, boost, group, k)
