"""Throughput of the MNIST Sparse CNN-2 against its ReLU twin (same shapes, dense weights).

Trains them on random data in one process, alternating short timed rounds so that machine
noise hits all alike, and prints samples/s (median over rounds) and the ratio, for batch
sizes 64 and 4. k-winners runs its CPU kernel (the default); ``--torch-ops`` also times the
sparse network with the torch ops that serve other devices (MODELS_BACKEND=torch).
    python benchmarks/bench_layers.py [--rounds 7] [--threads N] [--torch-ops]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models.backend as backends  # noqa: E402
from experiments.core.speed import keep_freed_memory  # noqa: E402
from models import ConvLayerConfig, HiddenLayerConfig, NetworkConfig, build_network  # noqa: E402

SPARSE = NetworkConfig(conv=[ConvLayerConfig(32, 400), ConvLayerConfig(64, 300)],
                       hidden=HiddenLayerConfig(700, 100, 0.3), k_inference_factor=1.5,
                       boost_strength=1.5, boost_strength_factor=0.85)
TWIN = NetworkConfig(conv=[ConvLayerConfig(32), ConvLayerConfig(64)], hidden=HiddenLayerConfig(700))


def time_steps(model, optimizer, batch_size, steps):
    """Seconds for ``steps`` SGD steps (the training loop's work: forward, backward, step)."""
    x = torch.randn(steps, batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (steps, batch_size))
    model.train()
    start = time.perf_counter()
    for i in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(x[i]), y[i]).backward()
        optimizer.step()
    return time.perf_counter() - start


def measure(batch_size, rounds, samples_per_round, torch_ops):
    steps = max(samples_per_round // batch_size, 10)
    nets = {}
    variants = [("sparse", SPARSE, "auto"), ("relu twin", TWIN, "auto")]
    if torch_ops:
        variants.insert(1, ("sparse, torch ops", SPARSE, "torch"))
    for name, cfg, mode in variants:
        torch.manual_seed(0)
        model = build_network(cfg)
        nets[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), mode)
        backends.BACKEND = mode
        time_steps(*nets[name][:2], batch_size, 5)  # warm-up (and the kernel's compilation)
    rates = {name: [] for name in nets}
    for _ in range(rounds):
        for name, (model, opt, mode) in nets.items():
            backends.BACKEND = mode
            rates[name].append(steps * batch_size / time_steps(model, opt, batch_size, steps))
    backends.BACKEND = "auto"
    return {name: statistics.median(r) for name, r in rates.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--torch-ops", action="store_true",
                        help="also time k-winners with torch ops instead of the CPU kernel")
    args = parser.parse_args()
    keep_freed_memory()  # as run.py does
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.rounds} rounds")
    for batch_size, samples, target in ((64, 3200, 0.85), (4, 400, 0.75)):
        rates = measure(batch_size, args.rounds, samples, args.torch_ops)
        twin = rates["relu twin"]
        line = (f"batch {batch_size:>2}: sparse {rates['sparse']:7.0f} samples/s, ReLU twin "
                f"{twin:7.0f} samples/s, ratio {rates['sparse'] / twin:.2f} (target >= {target})")
        if args.torch_ops:
            torch_ops = rates["sparse, torch ops"]
            line += f"; torch ops {torch_ops:7.0f} samples/s, ratio {torch_ops / twin:.2f}"
        print(line)


if __name__ == "__main__":
    main()
