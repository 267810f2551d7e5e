"""The noise sweep of each shipped network through the plain model and through
``models.sparse_inference`` (a job's ``eval.engine: plain | sparse``): the time of each, and
every test image whose prediction differs, with the reason.

For each of the eight networks it draws the sweep's noisy test sets as its training run drew
them (``NoiseSweep``, the run's seed; all eleven levels x 10,000 images), then times
``NoiseSweep.run`` with either engine in alternating rounds (the engine is made anew for
each sweep, as the job makes it after every epoch) and compares the correct-answer counts
level by level. For each image whose two predictions differ it feeds every block of the
engine the plain model's own input to that block and names the first k-winners layer whose
winners differ, with the gap of the differing units' boosted scores to the k-th (a tie within
float32 rounding when tiny); when no winner differs, the gap of the plain model's two best
logits. Writes sweeps.md, sweeps.csv and differences.csv to ``--out``.

    python benchmarks/check_inference.py [--rounds 2] [--out DIR]
"""

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data import DataConfig, load_dataset  # noqa: E402
from experiments.core.records import cpu_kind, git_commit  # noqa: E402
from experiments.train.sweep import NoiseSweep  # noqa: E402
from models import KWinners, KWinners2d, sparse_inference  # noqa: E402
from models.pretrained import available, load_pretrained, pretrained_info  # noqa: E402

CPU = torch.device("cpu")


def timed_sweeps(net, sweep, batch, rounds):
    """({engine: [seconds per sweep]}, {engine: counts of the last sweep})."""
    seconds, counts = {"plain": [], "sparse": []}, {}
    for r in range(rounds):
        for engine in ("plain", "sparse") if r % 2 == 0 else ("sparse", "plain"):
            start = time.perf_counter()
            counts[engine] = sweep.run(net, batch, CPU, engine)
            seconds[engine].append(time.perf_counter() - start)
    return seconds, counts


@torch.no_grad()
def predictions(model, x, batch):
    return torch.cat([model(part).argmax(1) for part in x.split(batch)])


def kwinners_inputs(net, x):
    """({k-winners layer name: (its input, its output)}, the logits) of the plain model on
    ``x``."""
    seen, hooks = {}, []

    def keep(name):
        def hook(module, args, out):
            seen[name] = (args[0], out)
        return hook

    for name, module in net.named_children():
        if isinstance(module, (KWinners, KWinners2d)):
            hooks.append(module.register_forward_hook(keep(name)))
    with torch.no_grad():
        logits = net(x)
    for hook in hooks:
        hook.remove()
    return seen, logits


def winner_gaps(layer, pre, winners_a, winners_b):
    """Per row of the layer's input ``pre`` (B, ...): the largest gap between the boosted
    score of a unit that wins in one mask and not in the other and the row's k-th score,
    relative to the row's largest score (NaN where the two masks agree)."""
    flat = pre.reshape(len(pre), -1)
    group = flat.shape[1] // len(layer.duty_cycle)
    scores = flat * layer.boost_factors().repeat_interleave(group)
    kth = scores.topk(layer.k_eval, dim=1).values[:, -1:]
    differ = winners_a.reshape(len(pre), -1) != winners_b.reshape(len(pre), -1)
    gap = ((scores - kth).abs() / scores.abs().amax(1, keepdim=True)).where(differ, -1.0)
    return gap.amax(1).where(differ.any(1), float("nan"))


@torch.no_grad()
def reason(net, engine, batch_x, row):
    """Why the two predictions of ``batch_x[row]`` differ (the engine on its whole batch, so
    that it takes the paths it took in the sweep)."""
    seen, logits = kwinners_inputs(net, batch_x)
    h, density = batch_x, None
    for block in engine.blocks:
        out = block(h.contiguous(), density)
        if block.name in seen:
            pre, plain = seen[block.name]
            gap = float(winner_gaps(block.activation, pre[row:row + 1], plain[row] != 0,
                                    out[row] != 0)[0])
            if gap == gap:
                return (f"winners of {block.name} differ; their scores lie within {gap:.1e} of "
                        f"the k-th")
            h = plain
        else:
            h = out
        density = None
    top = logits[row].topk(2).values
    return f"no winner differs; the two best logits differ by {float(top[0] - top[1]):.1e}"


def differences(name, net, sweep, batch):
    """[{network, level, image, label, plain, sparse, reason}] for every differing prediction."""
    engine, rows = sparse_inference(net), []
    for key, (x, y) in sweep.sets.items():
        plain, sparse = predictions(net, x, batch), predictions(engine, x, batch)
        for i in (plain != sparse).nonzero().flatten().tolist():
            start = i - i % batch
            rows.append({"network": name, "level": key, "image": i, "label": int(y[i]),
                         "plain": int(plain[i]), "sparse": int(sparse[i]),
                         "reason": reason(net, engine, x[start:start + batch], i - start)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", help="comma-separated network names (default: all)")
    parser.add_argument("--out", default="results/inference")
    parser.add_argument("--note", default="not recorded", help="what else ran")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the Table 1 jobs run (--threads 1)
    names = args.only.split(",") if args.only else available()
    dataset = load_dataset(DataConfig(root=str(REPO / "datasets")))
    sweeps, summary, listed = {}, [], []
    for name in names:
        info, net = pretrained_info(name), load_pretrained(name)
        key = (info["seed"], tuple(info["noise_levels"]))
        if key not in sweeps:
            sweeps[key] = NoiseSweep(dataset, info["noise_levels"], info["seed"], CPU)
        sweep, batch = sweeps[key], info["test_batch_size"]
        seconds, counts = timed_sweeps(net, sweep, batch, args.rounds)
        found = differences(name, net, sweep, batch)
        plain_s, sparse_s = (statistics.median(seconds[e]) for e in ("plain", "sparse"))
        summary.append({"network": name, "plain_s": round(plain_s, 2),
                        "sparse_s": round(sparse_s, 2), "speedup": round(plain_s / sparse_s, 2),
                        "counts_identical": counts["plain"] == counts["sparse"],
                        "images_differing": len(found), "images": sum(
                            len(y) for _, y in sweep.sets.values())})
        listed += found
        print(summary[-1], flush=True)
    write(Path(args.out), summary, listed, args)
    return 0


def write(out, summary, listed, args):
    out.mkdir(parents=True, exist_ok=True)
    for path, rows, fields in ((out / "sweeps.csv", summary, list(summary[0])),
                               (out / "differences.csv", listed,
                                ["network", "level", "image", "label", "plain", "sparse",
                                 "reason"])):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fields)
            writer.writeheader()
            writer.writerows(rows)
    total = (sum(r["plain_s"] for r in summary), sum(r["sparse_s"] for r in summary))
    command = " ".join(["python benchmarks/check_inference.py", *sys.argv[1:]])
    lines = ["# Noise sweeps: the plain model against models.sparse_inference", "",
             f"Written by `{command}`. CPU: {cpu_kind()}; 1 thread; torch {torch.__version__}; "
             f"commit {git_commit()}; medians of {args.rounds} sweeps each. Conditions: "
             f"{args.note}.", "",
             "| network | plain sweep (s) | sparse sweep (s) | speed-up | counts identical | "
             "images differing (of 110,000) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['plain_s']} | {r['sparse_s']} | {r['speedup']:.2f}x | "
              f"{'yes' if r['counts_identical'] else 'no'} | {r['images_differing']} |"
              for r in summary]
    lines += [f"| all | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.2f}x | | |", ""]
    lines += ["| network | level | image | label | plain | sparse | reason |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['level']} | {r['image']} | {r['label']} | {r['plain']} | "
              f"{r['sparse']} | {r['reason']} |" for r in listed]
    (out / "sweeps.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
