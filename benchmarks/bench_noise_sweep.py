"""Cost of the 11-level MNIST noise sweep against eleven plain evaluation passes.

The sweep draws its noisy test sets once per run (NoiseSweep construction) and then costs one
evaluation pass per level after every epoch. Prints medians over rounds and the ratios:
per-epoch sweep / 11 plain passes, and the same with the one-time draw charged to one epoch.
    python benchmarks/bench_noise_sweep.py [--rounds 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from data import DataConfig  # noqa: E402
from data.mnist import MNISTDataset  # noqa: E402
from experiments.train.sweep import NoiseSweep  # noqa: E402
from experiments.cli import load_experiment  # noqa: E402
from data.noise import PAPER_LEVELS  # noqa: E402
from experiments.train.loop import count_correct  # noqa: E402
from models import build_network  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    job = load_experiment("configs/mnist_sparse.yaml").jobs["sparse_cnn2"]
    torch.manual_seed(0)
    model = build_network(job.model)
    task = MNISTDataset(DataConfig(root="datasets", download=False))
    device = torch.device("cpu")
    x, y = task.test_set()
    batch = job.train.test_batch_size
    plain, sweep, draw = [], [], []
    for _ in range(args.rounds):
        plain.append(timed(lambda: [count_correct(model, x, y, batch, device) for _ in range(11)]))
        draw.append(timed(lambda: NoiseSweep(task, PAPER_LEVELS, 42, device)))
        noise = NoiseSweep(task, PAPER_LEVELS, 42, device)
        sweep.append(timed(lambda: noise.run(model, batch, device)))
    p, s, d = (statistics.median(v) for v in (plain, sweep, draw))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds, Sparse CNN-2, 10,000 test images, batch {batch}")
    print(f"11 plain evaluation passes: {p:.2f} s")
    print(f"noise sweep per epoch:      {s:.2f} s  (ratio {s / p:.2f}, target <= 1.3)")
    print(f"one-time noise draw:        {d:.2f} s  (first epoch incl. draw: ratio "
          f"{(s + d) / p:.2f}; over a 10-epoch run: {(s + d / 10) / p:.2f})")


if __name__ == "__main__":
    main()
