"""Where one Table 1 seed's time goes, by kind of work, from a profile of each network.

For each network of configs/mnist_table1.yaml it profiles (``torch.profiler``, 1 thread, real
MNIST as in bench_table1.py) SGD steps at batch 64, at batch 4 where the first epoch uses it,
and evaluation passes at the config's test batch size; splits each pass's time by kind of op;
and scales the shares to the pass's unprofiled time and to a whole run (its epochs x 60,000
training samples, 11 x 10,000 evaluations per epoch). The kinds:

    dense products   MKL matrix products (aten::mm, addmm, bmm, baddbmm): the hidden and
                     output layers, forward and backward
    oneDNN conv      aten::mkldnn_convolution and aten::convolution_backward: every network's
                     one-channel first convolution, and the dense networks' second
    numba kernels    models/'s CPU kernels: k-winners, max pooling, the convolutions'
                     sparse-gradient backward and sparse-input forward
    optimizer        SGD's update
    other            element-wise ops, copies, autograd and Python between ops

The first two run at or near this core's float32 rate (bench: a 64 x 4,320 x 1,000 product
by MKL), so their share is what faster kernels elsewhere cannot remove.
    python benchmarks/profile_table1.py [--only NAME ...] [--steps 50] [--eval-images 2048]
"""

import argparse
import collections
import time

import torch
from torch.profiler import profile, record_function

import bench_table1 as bench  # benchmarks/ is the script's folder, so first on sys.path
from experiments.core.speed import keep_freed_memory
from models import build_network, kernels

KINDS = ("dense products", "oneDNN conv", "numba kernels", "optimizer", "other")
PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
ONEDNN = {"aten::mkldnn_convolution", "aten::convolution_backward"}
SPARSE_FORWARD = "models.kernels.conv.conv2d"
B4_STEPS = 300  # SGD steps profiled at batch 4 (the first epoch of four networks)


def kind(op):
    """The kind of a profiler op name (see the module docstring)."""
    if op in PRODUCTS:
        return "dense products"
    if op in ONEDNN:
        return "oneDNN conv"
    if op == SPARSE_FORWARD or (op.startswith("_") and "CPU" in op):  # _KWinnersCPU, ...
        return "numba kernels"
    if op.startswith("Optimizer.") or op.startswith("aten::_foreach"):
        return "optimizer"
    return "other"


def label_sparse_forward():
    """Name the convolution kernel's entry in the profile: in evaluation it runs outside
    autograd, so its kernel would otherwise count as time between ops. Its F.conv2d calls
    keep their name."""
    conv2d = kernels.conv.conv2d

    def labelled(*args):
        with record_function(SPARSE_FORWARD):
            return conv2d(*args)
    kernels.conv.conv2d = labelled


def split(fn):
    """{kind: seconds} of one call of ``fn``: the profile's shares of an unprofiled call."""
    fn()  # warm-up (kernel compilation, allocator)
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    with profile() as prof:
        fn()
    seconds = collections.Counter()
    for event in prof.key_averages():
        seconds[kind(event.key)] += event.self_cpu_time_total
    total = sum(seconds.values())
    return {k: wall * v / total for k, v in seconds.items()}


def run_split(job, args):
    """{kind: seconds} of one whole run of ``job`` (training and sweeps)."""
    train = job.train
    first = train.batch_size_at(0)
    x, y, x_eval = bench.bench_data("mnist", max(args.steps * train.batch_size, B4_STEPS * first),
                                    args.eval_images)
    torch.manual_seed(0)
    model = build_network(job.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                foreach=True)
    out = collections.Counter()
    passes = [(train.batch_size, args.steps * train.batch_size,
               bench.TRAIN_SAMPLES * (train.epochs - (first != train.batch_size)))]
    if first != train.batch_size:
        passes.append((first, B4_STEPS * first, bench.TRAIN_SAMPLES))
    for size, n, samples in passes:
        part = split(lambda: bench.train_us(model, optimizer, x[:n], y[:n], size))
        out.update({k: v / n * samples for k, v in part.items()})
    part = split(lambda: bench.eval_us(model, x_eval, train.test_batch_size))
    evaluations = train.epochs * bench.LEVELS * bench.TEST_IMAGES
    out.update({k: v / len(x_eval) * evaluations for k, v in part.items()})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="network names (default: all eight)")
    parser.add_argument("--steps", type=int, default=50, help="SGD steps at batch 64 profiled")
    parser.add_argument("--eval-images", type=int, default=2048)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    label_sparse_forward()
    suite = bench.load_experiment(bench.REPO / "configs" / "mnist_table1.yaml")
    print("seconds of one run (1 thread, real MNIST), by kind of op; share of the run in %")
    print(f"{'network':17s} {'run':>6s} " + " ".join(f"{k:>15s}" for k in KINDS))
    seed = collections.Counter()
    for name in args.only or suite.run:
        secs = run_split(suite.jobs[name], args)
        seed.update(secs)
        print(_row(name, secs), flush=True)
    print(_row("one seed", seed))


def _row(name, secs):
    total = sum(secs.values())
    cells = " ".join(f"{secs.get(k, 0):.0f} s {100 * secs.get(k, 0) / total:3.0f}%".rjust(15)
                     for k in KINDS)
    return f"{name:17s} {total:4.0f} s {cells}"


if __name__ == "__main__":
    main()
