"""k-winners on the CPU, compiled with numba: the exact top k by counting.

``torch.topk`` on CPU copies each row into (value, index) pairs and runs ``std::nth_element``;
on fresh activations every comparison is a coin flip for the branch predictor, so selecting 400
of 4,608 values costs about 40 us per row here. These kernels select the same winners with
counting instead of comparing:

1. Each boosted score ``x_j * b_g`` becomes a uint32 key that orders like the float (flip the
   sign bit of a positive number, all bits of a negative one).
2. A threshold t with exactly k keys >= t is searched for in the key space, each probe one
   vectorised pass that counts the keys >= it (``_threshold``: the first probe is the previous
   row's answer, for a call's first row the last answer of the caller's previous call, the
   next ones interpolate; about 7-10 probes per row on the shipped networks). Once the
   bracket holds an eighth of the keys or fewer, they are copied out in one pass (a
   register compress per 16 keys, models/kernels/simd.py) and the later probes count them
   alone: Sparse CNN-2's first layer, 256 real test images, one thread, 2.24 to 1.73 us
   per row, one process alternating; its smaller layers (1,024 and 700 keys) unchanged.
   That needs AVX-512: on a CPU with AVX2 alone LLVM expands the compress lane by lane, and
   the copy cost more than it saved (Zen 3, the same rows: 12.6 us per row with it, 7.1
   without), so there every probe counts the whole row. A count is one compare and a
   popcount of its lane mask per 16 keys (``vcount_at_least``; numba's own loop widened the
   count to 64 bits: 4 keys per AVX2 compare; 14.3 to 11.0 us per row there).
   The winners are then every key >= t, read off in one vectorised pass.
3. When the k-th and (k + 1)-th largest keys are equal no such t exists: the search closes on
   that key, and of its ties the lowest indices win, as they do in ``torch.topk``'s place in
   models/kwinners.py (a background plateau: a constant input region gives one channel's
   pooled convolution outputs one value). The ties are looked for 16 keys at a time, one
   compare skipping those without one (``vcount_equal``): the first layer's k-winners of 256
   rows of real test images, one thread, Zen 4, two alternating runs: Sparse CNN-2 3.20 and
   3.17 to 2.77 and 2.75 us per row, DSW (a tie at the k-th key in 168 of the 256 rows) 3.44
   and 3.30 to 2.83 and 2.77, the same winners.

Against the radix selection this replaced (a histogram of the top 11 bits, then the boundary
bin's candidates 8 bits at a time: two scalar passes per row), on 256 real test images' rows,
one thread: Sparse CNN-2's first layer (600 of 4,608) 6.9 to 3.1-3.5 us per row, its second
(450 of 1,024) 2.5 to 0.8, its hidden layer (150 of 700) 1.6 to 0.6; the same winners, output,
losers and duty cycles, bit for bit.

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
from models.kernels.simd import (AVX512, LANES, vcompress_range, vcount_at_least,
                                 vcount_equal)



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
def _count_at_least(keys, n, t):
    """The number of keys[:n] >= t: one vectorised pass."""
    whole = n - n % LANES
    count = 0
    for j in range(0, whole, LANES):
        count += vcount_at_least(keys, j, t)
    for j in range(whole, n):
        count += keys[j] >= t
    return count


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _compact(keys, low, high, out):
    """out[:m] <- the keys with low <= key <= high, in order; returns m (out holds
    len(keys) + LANES values)."""
    n = keys.shape[0]
    whole = n - n % LANES
    m = 0
    for j in range(0, whole, LANES):
        m = vcompress_range(keys, j, low, high, out, m)
    for j in range(whole, n):
        out[m] = keys[j]
        m += (keys[j] >= low) & (keys[j] <= high)
    return m


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _threshold(keys, largest, k, guess, spare, compress=AVX512):
    """(t, need): the k largest ``keys`` (ties: lowest indices) are every key > t and the
    first ``need`` keys == t, for 1 <= k < len(keys).

    Looks for a t with exactly k keys >= t, counting the keys >= each probe in one pass. The
    first probe is ``guess`` (the previous row's answer: a layer's rows have similar
    thresholds), the others interpolate the count between the bracket's ends (the Illinois
    variant of regula falsi: an end kept twice has its weight halved, so that a bracket that
    closes from one side does not crawl), and from the 24th probe on they halve the bracket,
    so that no row takes more than 56. When the k-th and (k + 1)-th largest keys are equal no
    such t exists and the bracket closes on that key: t is it, and ``need`` of its ties win.
    With ``compress`` (default: the CPU has AVX-512's register compress), once the bracket
    holds at most an eighth of the keys, they are copied to ``spare`` (len(keys) + LANES
    values) in one pass, and the probes after it count them alone (Sparse CNN-2's first
    layer: 4,608 keys, 7-10 probes, the bracket under 576 keys after two or three). The same
    t either way: only the number of keys each probe counts differs.
    """
    n = keys.shape[0]
    lo, hi = np.int64(0), np.int64(largest) + 1  # count(keys >= lo) > k > count(keys >= hi)
    c_lo, c_hi = np.int64(n), np.int64(0)
    f_lo, f_hi = np.float64(n - k), np.float64(-k)  # count - k at each end
    kept = 0  # +1: lo was kept by the last probe, -1: hi was
    t, probes = guess, 0
    source, size, base = keys, n, np.int64(0)  # count(keys >= t) = base + count(source >= t)
    while hi - lo > 1:
        if compress and size == n and (c_lo - c_hi) * 8 <= n:  # the keys in [lo, hi) alone
            size = _compact(keys, np.uint32(lo), np.uint32(hi - 1), spare)
            source, base = spare, c_hi
        if not lo < t < hi:
            if probes < 24:
                t = lo + np.int64(f_lo / (f_lo - f_hi) * (hi - lo))
                t = min(max(t, lo + 1), hi - 1)
            else:
                t = lo + (hi - lo) // 2
        probes += 1
        count = base + np.int64(_count_at_least(source, size, np.uint32(t)))
        if count == k:
            return t - 1, 0
        if count > k:
            lo, c_lo, f_lo = t, count, np.float64(count - k)
            if kept == -1:
                f_hi *= 0.5
            kept = -1
        else:
            hi, c_hi, f_hi = t, count, np.float64(count - k)
            if kept == 1:
                f_lo *= 0.5
            kept = 1
        t = np.int64(-1)
    return lo, k - c_hi


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _forward_rows(x, boost, group, k, first, last, out, losers, active, count, hint):
    """Rows ``first`` to ``last`` - 1: ``out`` <- x at the winners, 0 elsewhere; ``losers``
    (when it has rows) <- True but at the winners; if ``count``, add positive winners.
    ``hint[0]``: the first row's first probe (-1: none), left as the last row's answer, so
    that a caller may carry it to its next call (the winners do not depend on it)."""
    n = x.shape[1]
    keys = np.empty(n, np.uint32)
    spare = np.empty(n + LANES, np.uint32)  # the threshold search's keys once it narrows
    mark = losers.shape[0] > 0
    zero = np.float32(0.0)
    guess = hint[0]
    for r in range(first, last):
        row, out_row = x[r], out[r]
        largest = _boosted_keys(row, boost, group, keys)
        if k >= n:  # every unit wins
            out_row[:] = row
            if mark:
                losers[r, :] = False
            if count:
                for j in range(n):
                    active[j // group] += row[j] > 0.0
            continue
        t, need = _threshold(keys, largest, k, guess, spare)
        guess = t + (need == 0)
        cut = np.uint32(t)  # the winners: every key > cut, then the first ``need`` keys == cut
        for j in range(n):
            out_row[j] = row[j] if keys[j] > cut else zero
        if mark:
            loser_row = losers[r]
            for j in range(n):
                loser_row[j] = keys[j] <= cut
        if count:
            for g in range(n // group):
                wins = 0
                for j in range(g * group, (g + 1) * group):
                    wins += (keys[j] > cut) & (row[j] > 0.0)
                active[g] += wins
        j = 0
        while need > 0:  # ties at cut: the lowest indices win
            if j + LANES <= n and vcount_equal(keys, j, cut) == 0:
                j += LANES  # sixteen keys without a tie, at one compare
                continue
            for u in range(j, min(j + LANES, n)):
                if need > 0 and keys[u] == cut:
                    out_row[u] = row[u]
                    if mark:
                        losers[r, u] = False
                    if count:
                        active[u // group] += row[u] > 0.0
                    need -= 1
            j += LANES
    hint[0] = guess


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


def _forward(x, boost, group, k, out, losers, duty, seen, period_max, train, chunks=1,
             hint=None):
    """k-winners of ``x`` (B, n) float32, scores ``x * boost`` (one factor per ``group`` entries).

    Writes ``out`` (B, n): the raw ``x`` at each row's k winners, 0 elsewhere, and, unless it
    is empty (0 rows), ``losers`` (B, n, bool): True everywhere but at the winners (what the
    backward pass needs). With ``train``, also updates the duty cycles ``duty`` (n // group,)
    and the sample count ``seen`` (1,) in place, as the layer's ``_update_duty_cycle`` does.
    With ``chunks`` > 1 the rows are split into that many parallel tasks, each counting into
    its own row of ``active`` (whole numbers: their sum does not depend on the split).
    ``hint`` (1,) int64: a first probe for the threshold search, updated (_forward_rows).
    """
    rows = x.shape[0]
    if train:
        active = np.zeros((chunks, duty.shape[0]), np.float64)
    else:  # nothing is counted: no buffer to clear (a batch of one image felt it)
        active = _NO_ACTIVE if chunks == 1 else np.zeros((chunks, 1), np.float64)
    hint = np.full(1, -1, np.int64) if hint is None else hint
    if chunks == 1:  # as rows.run_rows: from Python, one compiled kernel for both
        _forward_rows(x, boost, group, k, 0, rows, out, losers, active[0], train, hint)
    else:
        hints = np.full(chunks, hint[0], np.int64)  # one per slice: no two threads share one
        _forward_chunks(x, boost, group, k, out, losers, active, train, hints)
        hint[0] = hints[-1]
    if train:
        total = active[0] if chunks == 1 else active.sum(axis=0)
        _update_duty_cycle(duty, seen, total, rows, group, period_max)


@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def _forward_chunks(x, boost, group, k, out, losers, active, train, hints):
    """``_forward_rows`` over ``len(active)`` slices of the rows in parallel, slice c counting
    into ``active[c]``. Only the loop is here: in a parallel function numba turns array
    allocations and sums into parallel loops too, which made this one slow to compile. (Its
    threads are numba's, OpenMP here: Python threads over the same row kernel, which compile
    nothing more, trained 0.75x as fast at 2 threads.)"""
    rows, chunks = x.shape[0], active.shape[0]
    for c in numba.prange(chunks):
        _forward_rows(x, boost, group, k, c * rows // chunks, (c + 1) * rows // chunks,
                      out, losers, active[c], train, hints[c:c + 1])


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


def k_winners_eval(x, boost, group, k, hint=None):
    """``k_winners``' output in eval mode, from the same kernel, without autograd, a losers
    mask or duty cycles: ``x`` (B, n) a contiguous float32 tensor, ``boost`` (n // group,)
    float32 numpy (for the inference engine, models/inference.py). ``hint`` ((1,) int64
    numpy, kept by the caller from call to call): the threshold search's first probe, the
    last row's answer of the call before. The winners do not depend on it, only the number
    of counting passes: a single image has no row before it in its own call (Sparse CNN-2's
    first layer, one image: 6.1 us per row without a probe, 2.5 with its previous row's)."""
    out = torch.empty_like(x)
    _forward(x.numpy(), boost, group, k, out.numpy(), _NO_LOSERS, boost, _NO_COUNT, 1, False,
             chunk_count(x), hint)
    return out


_NO_LOSERS, _NO_COUNT = np.zeros((0, 0), np.bool_), np.zeros(1, np.int64)
_NO_ACTIVE = np.zeros((1, 1), np.float64)  # train=False: never written


def k_winners(x, layer, boost, group, k):
    """The k-winners output (B, n) of ``x`` (B, n) float32: the raw ``x`` at the k largest
    scores ``x * boost`` of each row (one factor of ``boost`` per ``group`` consecutive
    entries), 0 elsewhere; its gradient is 1 at the winners. In training mode it also updates
    ``layer.duty_cycle`` and ``layer.samples_seen`` in place, as the layer's torch ops do."""
    return _KWinnersCPU.apply(x, layer, boost, group, k)
