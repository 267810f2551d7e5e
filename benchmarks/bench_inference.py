"""Inference throughput of the eight shipped MNIST networks: the plain model against
``models.sparse_inference``, at several batch sizes and thread counts, in one process.

Each round times every (threads, batch size, network) pair, the plain model and then the
engine, for ``--seconds`` of wall time each on the real test images (batches taken in turn
from the 10,000), and the next round swaps the order; the tables give each figure's median
over rounds. Beside each speed-up: the network's multiply-count bound, dense / effective
multiply-adds on 1,000 clean test images (models/costs.py), and whether the engine reached
half of it. Writes throughput.md, throughput.csv, throughput.png and README.md to ``--out``.

    python benchmarks/bench_inference.py [--rounds 5] [--seconds 0.4] [--out DIR]
"""

import argparse
import csv
import itertools
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data import DataConfig, load_dataset  # noqa: E402
from experiments.cli import load_experiment  # noqa: E402
from experiments.core.records import cpu_kind, git_commit  # noqa: E402
from experiments.core.stats import t_interval  # noqa: E402
from models import sparse_inference  # noqa: E402
from models.costs import layer_multiply_adds  # noqa: E402
from models.pretrained import available, load_pretrained  # noqa: E402

BATCHES = (1, 16, 256)
THREADS = (1, 2)
SINGLE_IMAGES = 2_000  # batch 1 cycles through this many test images
FIELDS = ["network", "label", "threads", "batch", "plain", "sparse", "speedup", "speedup_low",
          "speedup_high", "bound", "half_bound_met"]


def throughput(model, batches, seconds):
    """Images per second of ``model`` over ``batches`` (taken in turn) for ``seconds``."""
    images, start = 0, time.perf_counter()
    with torch.inference_mode():
        for batch in itertools.cycle(batches):
            model(batch)
            images += len(batch)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return images / elapsed


def bound(net, x):
    """Dense / effective multiply-adds of ``net`` on the images ``x``."""
    rows = layer_multiply_adds(net, x)
    return sum(r["dense"] for r in rows) / sum(r["effective"] for r in rows)


def measure(names, x, rounds, seconds, threads, batch_sizes):
    """{(name, threads, batch): {"plain": [...], "sparse": [...]}} images per second."""
    nets = {name: load_pretrained(name) for name in names}
    engines = {name: sparse_inference(net) for name, net in nets.items()}
    batches = {b: list((x[:SINGLE_IMAGES] if b == 1 else x).split(b)) for b in batch_sizes}
    for b in batch_sizes:  # first calls (kernel compilation, oneDNN primitives) untimed
        for name in names:
            throughput(nets[name], batches[b][:2], 0.0)
            throughput(engines[name], batches[b][:2], 0.0)
    rates = {}
    for r in range(rounds):
        for t, b, name in itertools.product(threads, batch_sizes, names):
            torch.set_num_threads(t)
            pair = [("plain", nets[name]), ("sparse", engines[name])]
            for kind, model in pair if r % 2 == 0 else pair[::-1]:
                rate = throughput(model, batches[b], seconds)
                rates.setdefault((name, t, b), {"plain": [], "sparse": []})[kind].append(rate)
        print(f"round {r + 1} of {rounds} done", flush=True)
    return rates


def round_ratios(numerator, denominator):
    """Per-round ratios of two lists of rates taken in the same rounds (paired by round), and
    the 95% t interval of their geometric mean (a t interval of the log ratios)."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    low, high = t_interval(np.log(ratios))
    return ratios, (float(np.exp(low)), float(np.exp(high)))


def table_rows(rates, bounds, labels, kwinners):
    rows = []
    order = {name: i for i, name in enumerate(labels)}
    for (name, t, b), r in sorted(rates.items(), key=lambda kv: (order[kv[0][0]], *kv[0][1:])):
        plain, sparse = statistics.median(r["plain"]), statistics.median(r["sparse"])
        speedup = sparse / plain
        _, (low, high) = round_ratios(r["sparse"], r["plain"])
        rows.append({"network": name, "label": labels[name], "threads": t, "batch": b,
                     "plain": round(plain), "sparse": round(sparse),
                     "speedup": round(speedup, 2), "speedup_low": round(low, 2),
                     "speedup_high": round(high, 2), "bound": round(bounds[name], 2),
                     "half_bound_met": (speedup >= bounds[name] / 2) if name in kwinners
                     else ""})
    return rows


def markdown(rows):
    lines = ["| network | threads | batch | plain img/s | sparse img/s | speed-up [95% t] | "
             "bound | half the bound |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = {True: "yes", False: "no", "": "-"}[r["half_bound_met"]]
        lines.append(f"| {r['label']} | {r['threads']} | {r['batch']} | {r['plain']:,} | "
                     f"{r['sparse']:,} | {r['speedup']:.2f}x [{r['speedup_low']:.2f}, "
                     f"{r['speedup_high']:.2f}] | {r['bound']:.2f}x | {met} |")
    return "\n".join(lines) + "\n"


def against_dense(rows, rates, network="sparse_cnn2", dense="dense_cnn2"):
    """Lines: the engine's ``network`` against the plain ``dense`` network, per setting: the
    ratio of the medians, and the per-round ratios (the two timed in the same round)."""
    plain = {(r["threads"], r["batch"]): r["plain"] for r in rows if r["network"] == dense}
    label = {r["network"]: r["label"] for r in rows}
    lines = []
    for r in rows:
        setting = (r["threads"], r["batch"])
        if r["network"] != network or setting not in plain:
            continue
        ratios, (low, high) = round_ratios(rates[(network, *setting)]["sparse"],
                                           rates[(dense, *setting)]["plain"])
        lines.append(f"{label[network]} (sparse) / {label[dense]} (plain), {r['threads']} "
                     f"thread(s), batch {r['batch']}: {r['sparse'] / plain[setting]:.2f}x "
                     f"(the {len(ratios)} rounds: {min(ratios):.2f}x to {max(ratios):.2f}x, "
                     f"95% t interval of their geometric mean {low:.2f}x to {high:.2f}x)")
    return lines


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r["network"] for r in rows))
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(16, 7.5), sharex=True)
    for ax, name in zip(axes.flat, names):
        mine = [r for r in rows if r["network"] == name]
        for t, style in zip(sorted({r["threads"] for r in mine}), ("-", "--")):
            line = sorted((r for r in mine if r["threads"] == t), key=lambda r: r["batch"])
            batch = [r["batch"] for r in line]
            ax.plot(batch, [r["plain"] for r in line], style, color="0.45", marker="o",
                    label=f"plain, {t} thread(s)")
            ax.plot(batch, [r["sparse"] for r in line], style, color="tab:blue", marker="o",
                    label=f"sparse engine, {t} thread(s)")
            if t == 1:
                ax.plot(batch, [r["plain"] * r["bound"] for r in line], ":", color="tab:red",
                        label="plain x multiply-count bound, 1 thread")
        ax.set(title=f"{mine[0]['label']} (bound {mine[0]['bound']:.2f}x)", xscale="log",
               yscale="log", xlabel="batch size (images)", ylabel="throughput (images/s)")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_readme(out, args, extra):
    command = "python benchmarks/bench_inference.py " + shlex.join(sys.argv[1:])
    text = (f"# Inference throughput: plain model against models.sparse_inference\n\n"
            f"Written by `{command.strip()}`.\n\n"
            f"- CPU: {cpu_kind()}\n- torch {torch.__version__}; commit {git_commit()}\n"
            f"- {args.rounds} rounds of {args.seconds} s per figure, medians; speed-up [95% t]: "
            f"the ratio of the medians [the t interval of the per-round ratios' geometric mean, "
            f"the two figures of a ratio timed in the same round]; real MNIST test images; "
            f"bound: dense / effective multiply-adds on 1,000 clean test images\n"
            f"- conditions: {args.note}\n\n" + "\n".join(f"- {line}" for line in extra) + "\n"
            f"\nsweeps.md, sweeps.csv and differences.csv (the noise sweeps through either "
            f"engine, and each differing prediction) are written by "
            f"`python benchmarks/check_inference.py`; the first lines of sweeps.md say how.\n")
    (out / "README.md").write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4)
    parser.add_argument("--only", help="comma-separated network names (default: all)")
    parser.add_argument("--out", default="results/inference")
    parser.add_argument("--note", default="not recorded", help="what else ran (for README)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else available()
    x, _ = load_dataset(DataConfig(root=str(REPO / "datasets"))).test_set()
    jobs = load_experiment(REPO / "configs" / "mnist_table1.yaml").jobs
    labels = {name: jobs[name].label for name in names}
    kwinners = {name for name in names if jobs[name].model.hidden.k is not None
                or any(layer.k is not None for layer in jobs[name].model.conv)}
    bounds = {name: bound(load_pretrained(name), x[:1000]) for name in names}
    rates = measure(names, x, args.rounds, args.seconds, THREADS, BATCHES)
    rows = table_rows(rates, bounds, labels, kwinners)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.md").write_text(markdown(rows))
    with open(out / "throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "throughput.png")
    extra = against_dense(rows, rates) if {"sparse_cnn2", "dense_cnn2"} <= set(names) else []
    write_readme(out, args, extra)
    print(markdown(rows) + "\n".join(extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
