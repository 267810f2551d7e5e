"""What this CPU can do per nanosecond, for holding the engine's kernels against it: its
clock, and the 16-lane multiply-add rates the second convolution's loop could reach.

- clock: a chain of dependent float32 multiplies and adds (numba does not fuse them), 3 + 3
  cycles a step on Zen 4 and on recent Intel cores (4 + 4 on some older ones), and a chain of
  three dependent 1-cycle integer operations; the VM's "cpu MHz" need not be the clock the
  core runs at.
- multiply-adds: 8 independent chains of 16-lane fused multiply-adds, the weights in
  registers, then each with its 64-byte weight loaded from L1.
- the loop of ``models/kernels/sparse_conv.py``'s ``_by_outputs``: four accumulators (64 output
  channels), per entry one value and one weight offset loaded, four multiply-adds with their
  weights; 320 runs of about 30 entries (one image's output-and-kernel-row passes), the
  weights drawn at random from 4 KB (L1) to 200 KB (a whole 5 x 5 x 32 x 64 kernel);
- the same loop on Sparse CNN-2's real second-layer inputs (the engine's first-layer
  winners of real test images): one image again and again (its data in the caches), 16
  images, and 256 (a batch: its inputs pass through L2 beside the 200 KB of weights).

Every array starts a 64-byte cache line, as the kernels' do: a 16-lane load across two lines
runs at about two thirds of the rate here (0.46 against 0.30 ns on the Zen 4).

    python benchmarks/bench_cpu_limits.py [--rounds 5]
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from experiments.core.records import cpu_kind  # noqa: E402
from models.kernels import sparse_conv  # noqa: E402
from models.kernels.simd import LANES, aligned, item, vadd, vfma, vload, vstore  # noqa: E402


@numba.njit
def float_chain(n, a, b):
    x = 1.0
    for _ in range(n):
        x = x * a + b  # a multiply, then an add: two latencies a step
    return x


@numba.njit
def int_chain(n):
    x = np.uint64(1)
    for i in range(n):
        x = (x ^ (x >> np.uint64(3))) + np.uint64(i)  # shift, xor, add: three latencies
    return x


@numba.njit(boundscheck=False)
def fma_registers(w, n):
    z, y, s = vload(w, 0), vload(w, LANES), np.float32(1.0000001)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = z
    for _ in range(n):
        a0, a1, a2, a3 = vfma(a0, s, y), vfma(a1, s, y), vfma(a2, s, y), vfma(a3, s, y)
        a4, a5, a6, a7 = vfma(a4, s, y), vfma(a5, s, y), vfma(a6, s, y), vfma(a7, s, y)
    vstore(w, 0, vadd(vadd(vadd(a0, a1), vadd(a2, a3)), vadd(vadd(a4, a5), vadd(a6, a7))))


@numba.njit(boundscheck=False)
def fma_loads(w, n):
    z, s = vload(w, 0), np.float32(1.0000001)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = z
    for i in range(n):
        o = (i & 7) * 8 * LANES
        a0, a1 = vfma(a0, s, vload(w, o)), vfma(a1, s, vload(w, o + LANES))
        a2, a3 = vfma(a2, s, vload(w, o + 2 * LANES)), vfma(a3, s, vload(w, o + 3 * LANES))
        a4, a5 = vfma(a4, s, vload(w, o + 4 * LANES)), vfma(a5, s, vload(w, o + 5 * LANES))
        a6, a7 = vfma(a6, s, vload(w, o + 6 * LANES)), vfma(a7, s, vload(w, o + 7 * LANES))
    vstore(w, 0, vadd(vadd(vadd(a0, a1), vadd(a2, a3)), vadd(vadd(a4, a5), vadd(a6, a7))))


@numba.njit(boundscheck=False)
def entry_walk(w_taps, values, entries, starts, acc, reps):
    """_by_outputs' inner loop on made-up entries: acc[pass] += value * weights[entry]."""
    for _ in range(reps):
        for s in range(starts.shape[0] - 1):
            a = (s % 64) * 4 * LANES
            a0, a1 = vload(acc, a), vload(acc, a + LANES)
            a2, a3 = vload(acc, a + 2 * LANES), vload(acc, a + 3 * LANES)
            for t in range(item(starts, s), item(starts, s + 1)):
                v, w = item(values, t), item(entries, t)
                a0 = vfma(a0, v, vload(w_taps, w))
                a1 = vfma(a1, v, vload(w_taps, w + LANES))
                a2 = vfma(a2, v, vload(w_taps, w + 2 * LANES))
                a3 = vfma(a3, v, vload(w_taps, w + 3 * LANES))
            vstore(acc, a, a0)
            vstore(acc, a + LANES, a1)
            vstore(acc, a + 2 * LANES, a2)
            vstore(acc, a + 3 * LANES, a3)


@numba.njit(boundscheck=False)
def real_walk(images, w_taps, buffers, count, reps, kh):
    """``_channels_sample``'s masks, listing and walk (``kh`` kernel rows; 0: the masks and
    listing alone) on images[:count] (B, C, H * W), ``reps`` times."""
    acc, _, masks, start, entries, values = buffers
    channels, side = images.shape[1], int(np.sqrt(images.shape[2]))
    out = side - 4
    for _ in range(reps):
        for b in range(count):
            sparse_conv._channel_masks(images[b], np.float32(0.0), masks, 1)
            sparse_conv._by_outputs(images[b].reshape(-1), side, np.float32(0.0), w_taps,
                                    channels, kh, 5, out, out, acc, masks, 1, start, entries,
                                    values, True)


def real_inputs():
    """(Sparse CNN-2's second-layer inputs of 256 real test images (B, 32, 144), its
    weights' layout, each image's entries: the products' passes over them / 4)."""
    import torch
    import torch.nn.functional as F
    from data import DataConfig, load_dataset
    from models import sparse_inference
    from models.pretrained import load_pretrained
    torch.set_num_threads(1)
    x, _ = load_dataset(DataConfig(root=str(REPO / "datasets"), test_limit=256)).test_set()
    engine = sparse_inference(load_pretrained("sparse_cnn2").eval())
    h = next(iter(engine.layer_outputs(x[:256]).values()))  # the first block's winners
    present = (h != 0).float().sum(1, keepdim=True)
    entries = F.conv2d(present, torch.ones(1, 1, 5, 5)).sum((1, 2, 3))
    return h.reshape(len(h), h.shape[1], -1).contiguous().numpy(), engine.blocks[1].layout, \
        entries.numpy()


def best_ns(fn, per, rounds):
    """The fastest of ``rounds`` calls of ``fn``, in ns per one of its ``per`` operations."""
    fn()
    best = min(_seconds(fn) for _ in range(rounds))
    return best / per * 1e9


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    n = 100_000_000
    step = best_ns(lambda: float_chain(n, 0.999999, 1e-7), n, args.rounds)
    ints = best_ns(lambda: int_chain(n), n, args.rounds)
    print(f"CPU: {cpu_kind()}")
    print(f"clock: float multiply + add chain {step:.3f} ns a step ({6 / step:.2f} GHz at 3 + 3 "
          f"cycles); integer chain {ints:.3f} ns ({3 / ints:.2f} GHz at 3 cycles)")
    w = aligned(np.full(4096, 0.5, np.float32))  # as the kernels' weights: whole cache lines
    m = 10_000_000
    reg = best_ns(lambda: fma_registers(w, m), 8 * m, args.rounds)
    mem = best_ns(lambda: fma_loads(w, m), 8 * m, args.rounds)
    print(f"16-lane multiply-add: {reg:.3f} ns from registers, {mem:.3f} ns with its 64-byte "
          f"load from L1 ({4 * mem:.2f} ns for the four of an entry)")
    rng = np.random.default_rng(0)
    passes, per = 320, 30
    count = passes * per
    values = rng.standard_normal(count).astype(np.float32)
    cuts = np.sort(rng.integers(0, count, passes - 1))
    starts = np.concatenate([[0], cuts, [count]]).astype(np.int64)
    acc = aligned(np.zeros(64 * 4 * LANES, np.float32))
    for kb in (4, 16, 32, 40, 200):
        vectors = kb * 1024 // (4 * 4 * LANES)
        w_taps = aligned(rng.standard_normal(vectors * 4 * LANES).astype(np.float32))
        entries = (rng.integers(0, vectors, count) * 4 * LANES).astype(np.int64)
        ns = best_ns(lambda: entry_walk(w_taps, values, entries, starts, acc, 200), 200 * count,
                     args.rounds)
        print(f"_by_outputs' loop, weights from {kb:3d} KB: {ns:.3f} ns per entry")
    images, layout, entries = real_inputs()
    if not sparse_conv.AVX512 or layout.w_taps.size != 5 * 5 * 32 * 64:
        print("the real walk: AVX-512 and Sparse CNN-2's 64 output channels only")
        return 0
    buffers = sparse_conv._channels_buffers(32, 12, 12, 5, 5, 64)
    for count, reps in ((1, 2000), (16, 125), (256, 8)):
        walk, listing = (best_ns(lambda kh=kh: real_walk(images, layout.w_taps, buffers, count,
                                                         reps, kh), count * reps, args.rounds)
                         for kh in (5, 0))
        products = (walk - listing) / 1e3
        per = products * 1e3 / entries[:count].mean()
        print(f"real inputs, {count:3d} image(s): masks and listing {listing / 1e3:.2f} us, "
              f"products {products:.2f} us per image ({entries[:count].mean():,.0f} entries: "
              f"{per:.3f} ns each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
