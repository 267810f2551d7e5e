"""Whole-run benchmark of the eight Table 1 networks: the old code path against the new one.

For each network of configs/mnist_table1.yaml it times, in one process and alternating round by
round so that machine noise hits both alike, what a Table 1 job does: SGD steps at batch 64 and
(for the networks whose first epoch runs at batch 4) at batch 4, and the noise sweep's
evaluation passes at the config's test batch size. "old" is the ``models/`` package of an
earlier commit (``--old``, default the last commit before the fast pooling), imported beside
today's, stepped by torch's multi-tensor SGD; "new" is today's, stepped by today's optimizer
(``make_optimizer``: one pass per parameter for momentum steps). ``--old HEAD`` isolates
the optimizer. Both train from the same initial weights on the same data: by
default real MNIST (shuffled training images, and test images at noise levels 0-0.5 for the
evaluation passes, as the sweep sees them); ``--data random`` uses Gaussian noise images (as some
earlier figures in CHANGELOG.md did). Random images and gradients flatter code whose speed
depends on the data (a branch per value mispredicts far more on noise), so real data is what
a Table 1 run sees.

It prints per-network microseconds per sample and the ratios, then projects each network's
run (its epochs x 60,000 training samples, 11 x 10,000 evaluations per epoch) and the wall
time of all 80 Table 1 runs (10 seeds) as 2 jobs of 1 thread on 2 cores. The projection counts
no data loading or noise drawing, and two jobs sharing a machine run slower than one alone.
    python benchmarks/bench_table1.py [--rounds 3] [--steps 100] [--eval-images 2000]
                                      [--data mnist|random] [--old COMMIT]
"""

import argparse
import dataclasses
import functools
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data import DataConfig  # noqa: E402
from data.mnist import MNISTDataset  # noqa: E402
from experiments.core.speed import keep_freed_memory  # noqa: E402
from experiments.cli import load_experiment  # noqa: E402
from experiments.train.loop import make_optimizer  # noqa: E402
from models import build_network  # noqa: E402

OLD = "9facf51"  # the last commit before the fast max pooling and the output-writing kernel
TRAIN_SAMPLES, TEST_IMAGES, LEVELS, SEEDS, JOBS = 60_000, 10_000, 11, 10, 2


def import_models_at(commit, folder):
    """The ``models`` package as it was at ``commit``, imported beside today's."""
    archive = subprocess.run(["git", "archive", commit, "models"], cwd=REPO, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    today = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "models"}
    sys.path.insert(0, str(folder))
    try:
        old = importlib.import_module("models")
    finally:
        sys.path.remove(str(folder))
        for k in [k for k in sys.modules if k.split(".")[0] == "models"]:
            del sys.modules[k]
        sys.modules.update(today)
    return old


def old_network(old, cfg):
    """Build today's NetworkConfig ``cfg`` with the old package (fields it knows)."""
    def convert(cls, obj):
        known = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in dataclasses.asdict(obj).items() if k in known}
    fields = convert(old.NetworkConfig, cfg)
    fields["conv"] = [old.ConvLayerConfig(**convert(old.ConvLayerConfig, c)) for c in cfg.conv]
    fields["hidden"] = old.HiddenLayerConfig(**convert(old.HiddenLayerConfig, cfg.hidden))
    return old.build_network(old.NetworkConfig(**fields))


def train_us(model, optimizer, x, y, batch_size):
    """Microseconds per training sample over the batches of (x, y)."""
    model.train()
    start = time.perf_counter()
    for i in range(0, len(y), batch_size):
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(x[i:i + batch_size]), y[i:i + batch_size]).backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(y) * 1e6


@torch.inference_mode()
def eval_us(model, x, batch_size):
    model.eval()
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size]).argmax(dim=1)
    return (time.perf_counter() - start) / len(x) * 1e6


@functools.cache
def mnist():
    return MNISTDataset(DataConfig(root=str(REPO / "datasets")))


@functools.cache
def bench_data(kind, train_count, eval_count):
    """(training images, labels, evaluation images): real MNIST or Gaussian noise; drawn once
    per size and shared by the networks (read only)."""
    if kind == "random":
        torch.manual_seed(0)
        x = torch.randn(max(train_count, eval_count), 1, 28, 28)
        return x, torch.randint(0, 10, (len(x),)), x[:eval_count]
    dataset = mnist()
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(dataset.num_train, generator=generator)[:train_count]
    levels = torch.linspace(0, 0.5, LEVELS).tolist()
    per_level = -(-eval_count // LEVELS)
    noisy = [dataset.noisy_test_set(level, generator)[0][:per_level] for level in levels]
    return dataset.train_x[order], dataset.train_y[order], torch.cat(noisy)[:eval_count]


def measure(job, old, args):
    """{path: {"b64", "b4", "eval": median us/sample}} for one network."""
    cfg, train = job.model, job.train
    first = train.batch_size_at(0)
    x, y, x_eval = bench_data(args.data, args.steps * train.batch_size, args.eval_images)
    nets = {}
    for name, build in (("old", lambda: old_network(old, cfg)), ("new", lambda: build_network(cfg))):
        torch.manual_seed(0)
        model = build()
        nets[name] = (model, make_optimizer(model, train) if name == "new" else torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum, foreach=True))
    times = {name: {"b64": [], "b4": [], "eval": []} for name in nets}
    for round_ in range(args.rounds + 1):  # round 0 warms up (and compiles the kernels)
        for name, (model, opt) in nets.items():
            n64 = args.steps * train.batch_size if round_ else 2 * train.batch_size
            sample = {"b64": train_us(model, opt, x[:n64], y[:n64], train.batch_size)}
            if first != train.batch_size:
                n4 = args.steps * first if round_ else 8 * first
                sample["b4"] = train_us(model, opt, x[:n4], y[:n4], first)
            sample["eval"] = eval_us(model, x_eval, train.test_batch_size)
            if round_:
                for key, value in sample.items():
                    times[name][key].append(value)
    return {name: {k: statistics.median(v) if v else None for k, v in t.items()}
            for name, t in times.items()}


def run_seconds(us, train):
    """One run's projected seconds: first epoch, the other epochs, and the sweeps."""
    first = us["b4"] if us["b4"] is not None else us["b64"]
    training = TRAIN_SAMPLES * (first + (train.epochs - 1) * us["b64"]) / 1e6
    return training + train.epochs * LEVELS * TEST_IMAGES * us["eval"] / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="SGD steps per timed round")
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (Table 1 jobs: 1)")
    parser.add_argument("--old", default=OLD, help="git commit whose models/ is the old path")
    parser.add_argument("--only", nargs="*", help="network names (default: all eight)")
    parser.add_argument("--data", choices=["mnist", "random"], default="mnist",
                        help="real MNIST images (default) or Gaussian noise")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    suite = load_experiment(REPO / "configs" / "mnist_table1.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        old = import_models_at(args.old, Path(tmp))
        print(f"old: models/ at {args.old}; new: the working tree; {args.threads} thread(s), "
              f"{args.rounds} rounds, {args.data} data, medians in us per sample")
        print(f"{'network':17s} {'train b64 old/new':>19s} {'train b4 old/new':>18s} "
              f"{'eval old/new':>14s}   run old -> new")
        totals = {"old": 0.0, "new": 0.0}
        for name in args.only or suite.run:
            job = suite.jobs[name]
            us = measure(job, old, args)
            secs = {path: run_seconds(us[path], job.train) for path in us}
            for path in totals:
                totals[path] += secs[path]
            print(f"{name:17s} {_pair(us, 'b64'):>19s} {_pair(us, 'b4'):>18s} "
                  f"{_pair(us, 'eval'):>14s}   {secs['old']:5.0f} s -> {secs['new']:5.0f} s "
                  f"({secs['old'] / secs['new']:.2f}x)", flush=True)
    hours = {path: SEEDS * t / JOBS / 3600 for path, t in totals.items()}
    print(f"projected Table 1 (80 runs, {JOBS} jobs x 1 thread): {hours['old']:.2f} h -> "
          f"{hours['new']:.2f} h ({hours['old'] / hours['new']:.2f}x)")


def _pair(us, key):
    if us["old"][key] is None:
        return "-"
    old, new = us["old"][key], us["new"][key]
    return f"{old:.0f}/{new:.0f} {old / new:.2f}x"


if __name__ == "__main__":
    main()
