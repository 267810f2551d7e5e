"""S seeds one after another against S seeds as one SeedBatch, for the eight Table 1 networks.

For each network of configs/mnist_table1.yaml and each S, in one process and alternating round
by round, it times what a Table 1 job does, for S seeds: SGD steps (``make_optimizer``) at
batch 4 (networks whose first epoch runs at batch 4) and at batch 64, and evaluation at the
config's test batch size (per seed). "seq" trains S ordinary networks one after another
(today's path); "batch" trains one ``models.seed_batch.SeedBatch`` of the same S networks on
the same random MNIST-shaped data. Times are medians in microseconds per sample per seed, so
equal numbers mean equal time for the same work. They are CPU seconds of this process, not wall
time: with 1 thread that is the work itself, much steadier than wall time on a machine whose
cores other jobs share (with --threads > 1 it adds up the threads).

It then projects one Table 1 seed of every network (its epochs x 60,000 training samples,
11 x 10,000 evaluations per epoch; ``bench_table1.run_seconds``) and the 80 runs as 2 jobs of 1
thread, from the largest S, with batched training and evaluation by whichever path was faster
(the integration can unstack for it). No data loading or noise drawing is counted.

The process sets glibc's allocator as Table 1 jobs do (``keep_freed_memory``). Blocks over
32 MB are still mmap'ed, and so page-faulted in, at every allocation; S seeds' stacked tensors
cross that size where one seed's do not (Dense CNN-1's hidden weight is 17 MB a seed).
``--no-mmap`` also serves those from the heap (mallopt M_MMAP_MAX = 0), for both paths.
    python benchmarks/bench_seed_batch.py [--seeds 2 5] [--rounds 2] [--steps-b4 150]
        [--steps-b64 20] [--eval-images 1024] [--no-mmap] [--only sparse_cnn2 ...]
"""

import argparse
import ctypes
import statistics
import time

import torch
import torch.nn.functional as F

from bench_table1 import JOBS, REPO, SEEDS, run_seconds
from experiments.core.speed import keep_freed_memory
from experiments.train import suite as train_task
from experiments.train.loop import make_optimizer
from models import build_network
from models.seed_batch import SeedBatch, seed_losses

M_MMAP_MAX = -4  # glibc mallopt parameter (0: no block is mmap'ed)
CLOCK = time.process_time


def _batches(x, y, dim, batch_size):
    """Consecutive (x, y) batches along ``dim`` (0: samples; 1: (S, N, ...) seed-major)."""
    for i in range(0, y.shape[dim], batch_size):
        size = min(batch_size, y.shape[dim] - i)
        yield x.narrow(dim, i, size), y.narrow(dim, i, size)


def train_us(model, optimizer, x, y, batch_size, dim=0):
    """Microseconds per training sample per seed: one network (dim 0; x (N, C, H, W)) or a
    SeedBatch (dim 1; x (S, N, C, H, W), y (S, N), loss the sum of the seeds' losses)."""
    model.train()
    start = CLOCK()
    for xb, yb in _batches(x, y, dim, batch_size):
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = F.nll_loss(out, yb) if dim == 0 else seed_losses(out, yb).sum()
        loss.backward()
        optimizer.step()
    return (CLOCK() - start) / y.numel() * 1e6


@torch.inference_mode()
def eval_us(model, x, batch_size, dim=0):
    """Microseconds per image per seed in eval mode, batches along ``dim`` as ``train_us``."""
    model.eval()
    start = CLOCK()
    for xb, _ in _batches(x, x[..., 0, 0, 0], dim, batch_size):
        model(xb).argmax(dim=-1)
    return (CLOCK() - start) / x.shape[:dim + 1].numel() * 1e6


def train_sizes(train):
    """{"b4": the first epoch's batch size (when it differs), "b64": the batch size}."""
    first = train.batch_size_at(0)
    return {**({"b4": first} if first != train.batch_size else {}), "b64": train.batch_size}


def seq_round(nets, x, y, steps, train):
    """{"b4", "b64", "eval": us per sample per seed} of S networks run one after another."""
    out = {}
    for key, size in train_sizes(train).items():
        n = steps[key] * size
        out[key] = statistics.mean(train_us(model, opt, x[s, :n], y[s, :n], size)
                                   for s, (model, opt) in enumerate(nets))
    out["eval"] = statistics.mean(eval_us(model, x[s, :steps["eval"]], train.test_batch_size)
                                  for s, (model, _) in enumerate(nets))
    return out


def batch_round(batch, optimizer, x, y, steps, train):
    """The same as ``seq_round`` for one SeedBatch of the S networks."""
    out = {}
    for key, size in train_sizes(train).items():
        n = steps[key] * size
        out[key] = train_us(batch, optimizer, x[:, :n], y[:, :n], size, dim=1)
    out["eval"] = eval_us(batch, x[:, :steps["eval"]], train.test_batch_size, dim=1)
    return out


def measure(job, num_seeds, args):
    """{"seq"|"batch": {"b4", "b64", "eval": median us per sample per seed}} for one network."""
    cfg, train = job.model, job.train
    nets = []
    for seed in range(num_seeds):
        torch.manual_seed(seed)
        model = build_network(cfg)
        nets.append((model, make_optimizer(model, train)))
    batch = SeedBatch(cfg, [model for model, _ in nets])
    batch_opt = make_optimizer(batch, train)
    steps = {"b4": args.steps_b4, "b64": args.steps_b64, "eval": args.eval_images}
    warmup = {"b4": 4, "b64": 2, "eval": train.test_batch_size}  # also compiles the kernels
    n = max(steps["b4"] * 4, steps["b64"] * train.batch_size, steps["eval"])
    x = torch.randn(num_seeds, n, *cfg.input_shape)
    y = torch.randint(0, cfg.num_classes, (num_seeds, n))
    rounds = {"seq": [], "batch": []}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        counts = steps if round_ else warmup
        sample = {"seq": seq_round(nets, x, y, counts, train),
                  "batch": batch_round(batch, batch_opt, x, y, counts, train)}
        for path in rounds:
            rounds[path] += [sample[path]] if round_ else []
    return {path: {key: statistics.median(r[key] for r in rs) if key in rs[0] else None
                   for key in ("b4", "b64", "eval")} for path, rs in rounds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 5], help="values of S")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps-b4", type=int, default=150, help="batch-4 steps per round")
    parser.add_argument("--steps-b64", type=int, default=20, help="batch-64 steps per round")
    parser.add_argument("--eval-images", type=int, default=1024, help="per seed and round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (Table 1 jobs: 1)")
    parser.add_argument("--no-mmap", action="store_true", help="no mmap'ed blocks (see above)")
    parser.add_argument("--only", nargs="*", help="network names (default: all eight)")
    args = parser.parse_args()
    keep_freed_memory()
    if args.no_mmap:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_MAX, 0)
    torch.set_num_threads(args.threads)
    suite = load_experiment(REPO / "configs" / "mnist_table1.yaml")
    print(f"seq: S networks one after another; batch: one SeedBatch of S; {args.threads} "
          f"thread(s), {args.rounds} rounds{', no mmap' if args.no_mmap else ''}; median CPU "
          f"us per sample per seed, seq/batch and seq/batch ratio")
    print(f"{'network':17s} {'S':>2s} {'train b4':>18s} {'train b64':>18s} {'eval':>16s}")
    totals = {"seq": 0.0, "batch": 0.0}
    for name in args.only or suite.run:
        job = suite.jobs[name]
        for num_seeds in args.seeds:
            us = measure(job, num_seeds, args)
            print(f"{name:17s} {num_seeds:2d} {_pair(us, 'b4'):>18s} {_pair(us, 'b64'):>18s} "
                  f"{_pair(us, 'eval'):>16s}", flush=True)
        # From the largest S; the batched runs evaluate by whichever path was faster.
        fastest_eval = min(us["seq"]["eval"], us["batch"]["eval"])
        secs = {"seq": run_seconds(us["seq"], job.train),
                "batch": run_seconds({**us["batch"], "eval": fastest_eval}, job.train)}
        for path in totals:
            totals[path] += secs[path]
        print(f"{'':17s} one seed's run, S={num_seeds}: {secs['seq']:.0f} s -> "
              f"{secs['batch']:.0f} s ({secs['seq'] / secs['batch']:.2f}x)", flush=True)
    hours = {path: SEEDS * t / JOBS / 3600 for path, t in totals.items()}
    print(f"projected, S={args.seeds[-1]}, batched training: one Table 1 seed of these networks "
          f"{totals['seq']:.0f} s -> {totals['batch']:.0f} s "
          f"({totals['seq'] / totals['batch']:.2f}x); {SEEDS} seeds as {JOBS} jobs x 1 thread: "
          f"{hours['seq']:.2f} h -> {hours['batch']:.2f} h")


def _pair(us, key):
    if us["seq"][key] is None:
        return "-"
    seq, batch = us["seq"][key], us["batch"][key]
    return f"{seq:.0f}/{batch:.0f} {seq / batch:.2f}x"


if __name__ == "__main__":
    main()
