"""Does another device's k-winners path pick the same winners and keep the same duty cycles as
the CPU kernel, on the same inputs? (For a GPU machine: ``--device cuda``.)

For each k-winners network of configs/mnist_table1.yaml it trains the network on the CPU (the
numba kernels) for ``--steps`` SGD steps at the config's batch size, then evaluates one test
batch. Every k-winners layer has a twin on ``--device``, a copy made before the first step;
a forward hook hands the twin the CPU layer's exact input at every step, in the same mode
(training: k winners and duty-cycle updates; eval: k_eval winners, no updates). So the twin's
duty cycles evolve from the same inputs by the other device's code (torch ops on a GPU), and
any difference is that code's, not drift between two trained models. Per network it prints
the rows compared, the rows whose winners differ only inside a tie (equal scores at the k-th
place: the same values kept, at other positions), the rows whose outputs differ otherwise, and
the largest duty-cycle and boost-factor difference after the steps. On ``--device cpu``
the twin runs the torch ops (backend "torch") against the numba kernel. Exit status 1 when a
row differs or a duty cycle differs by more than ``--tolerance``.

    python benchmarks/check_device.py --device cuda [--steps 50] [--data mnist|random]
"""

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import models.backend as backend  # noqa: E402
from data import DataConfig  # noqa: E402
from experiments.cli import load_experiment  # noqa: E402
from experiments.train.loop import make_optimizer  # noqa: E402
from models import KWinners, KWinners2d, build_network, rezero_weights  # noqa: E402


def twin_forward(twin, x):
    """The twin's k-winners of ``x``: the layer's own torch ops (what every GPU runs)."""
    return twin(x)


def compare(cfg, train, device, steps, x, y, x_test, seed=0, twin_forward=twin_forward):
    """One network trained ``steps`` steps on the CPU, its k-winners layers mirrored on
    ``device`` (each twin run by ``twin_forward(twin, x)``): {"rows", "rows_tie",
    "rows_differ", "duty_max_diff", "boost_max_diff", "duty_mean"}."""
    torch.manual_seed(seed)
    model = build_network(cfg)
    optimizer = make_optimizer(model, train)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (KWinners, KWinners2d))}
    twins = {n: copy.deepcopy(m).to(device) for n, m in layers.items()}
    tally = {"rows": 0, "rows_tie": 0, "rows_differ": 0}

    def hook(name):
        def mirror(layer, inputs, output):
            twin = twins[name]
            twin.train(layer.training)
            saved, backend.BACKEND = backend.BACKEND, "torch"  # the twin never takes the kernel
            try:
                with torch.no_grad():
                    other = twin_forward(twin, inputs[0].detach().to(device)).cpu()
            finally:
                backend.BACKEND = saved
            mine = output.detach().flatten(1)
            other = other.flatten(1)
            same = (other == mine).all(dim=1)
            # Tied scores at the k-th place (e.g. the constant background of an MNIST digit
            # gives equal conv outputs): torch.topk and the kernel may keep different members
            # of the tie, which leaves the same values, so the sorted rows agree.
            tie = ~same & (other.sort(dim=1).values == mine.sort(dim=1).values).all(dim=1)
            tally["rows"] += len(same)
            tally["rows_tie"] += int(tie.sum())
            tally["rows_differ"] += int((~same & ~tie).sum())
        return mirror

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        model.train()
        batch = train.batch_size
        for step in range(steps):
            xb, yb = x[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            F.nll_loss(model(xb), yb).backward()
            optimizer.step()
            rezero_weights(model)
        model.eval()
        with torch.no_grad():
            model(x_test)
    finally:
        for h in handles:
            h.remove()
    duty = max(float((twins[n].duty_cycle.cpu() - m.duty_cycle).abs().max())
               for n, m in layers.items())
    boost = max(float((twins[n].boost_factors().cpu() - m.boost_factors()).abs().max())
                for n, m in layers.items())
    mean = sum(float(m.duty_cycle.mean()) for m in layers.values()) / len(layers)
    return {**tally, "duty_max_diff": duty, "boost_max_diff": boost, "duty_mean": mean}


def has_k_winners(cfg):
    """Whether the network of ``cfg`` has a k-winners layer (a layer with k set)."""
    return cfg.hidden.k is not None or any(layer.k is not None for layer in cfg.conv)


def data(kind, count, test_count):
    """(training images, labels, test images): real MNIST (shuffled) or Gaussian noise."""
    generator = torch.Generator().manual_seed(0)
    if kind == "random":
        x = torch.randn(count + test_count, 1, 28, 28, generator=generator)
        return x[:count], torch.randint(0, 10, (count,), generator=generator), x[count:]
    from data.mnist import MNISTDataset
    dataset = MNISTDataset(DataConfig(root=str(REPO / "datasets")))
    order = torch.randperm(dataset.num_train, generator=generator)[:count]
    return dataset.train_x[order], dataset.train_y[order], dataset.test_set()[0][:test_count]


def main(argv=None, twin_forward=twin_forward):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50, help="SGD steps per network")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--data", choices=["mnist", "random"], default="mnist")
    parser.add_argument("--only", nargs="*", help="network names (default: every k-winners one)")
    parser.add_argument("--tolerance", type=float, default=1e-6,
                        help="largest duty-cycle difference that passes")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("check_device: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    suite = load_experiment(REPO / "configs" / "mnist_table1.yaml")
    unknown = sorted(set(args.only or ()) - set(suite.jobs))
    if unknown:
        print(f"check_device: no network {', '.join(unknown)} in configs/mnist_table1.yaml "
              f"(it has {', '.join(suite.run)})", file=sys.stderr)
        return 2
    names = args.only or [n for n in suite.run if has_k_winners(suite.jobs[n].model)]
    batch = max(suite.jobs[n].train.batch_size for n in names)
    x, y, x_test = data(args.data, args.steps * batch, args.test_images)
    other = torch.cuda.get_device_name() if args.device.startswith("cuda") else "torch ops"
    print(f"CPU kernel against {args.device} ({other}), {args.steps} training steps + "
          f"{args.test_images} test images, {args.data} data")
    print(f"{'network':17s} {'rows':>7s} {'ties':>6s} {'differ':>7s} {'duty diff':>10s} "
          f"{'boost diff':>11s}")
    failed = False
    for name in names:
        job = suite.jobs[name]
        r = compare(job.model, job.train, args.device, args.steps, x, y, x_test,
                    twin_forward=twin_forward)
        failed |= r["rows_differ"] > 0 or r["duty_max_diff"] > args.tolerance
        print(f"{name:17s} {r['rows']:7d} {r['rows_tie']:6d} {r['rows_differ']:7d} "
              f"{r['duty_max_diff']:10.2e} {r['boost_max_diff']:11.2e}", flush=True)
    print("DIFFERENT winners or duty cycles" if failed else "same winners and duty cycles")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
