"""The adversarial study's query-only searches (Square, Sparse-RS, AutoAttack's Square) with
their queries answered by the network itself (``engine: plain``, the shipped records) and by its
``models.sparse_inference`` engine (``engine: sparse``): the time of each, and how many of the
recorded verdicts differ.

For each shipped network it runs the study's own step (experiments/robust/steps.py: the same
images, random draws, budgets and plain-forward verdicts as ``python run.py
configs/mnist_adversarial.yaml``) with either engine, alternating which goes first round by
round in one process, 1 thread, and compares the per-image rows (image, budget, correct) of
the two. Writes queries.md and queries.csv to ``--out``.

    python benchmarks/bench_query_engine.py [--images 200] [--rounds 2] [--only a,b]
        [--attacks square,sparse_rs,autoattack] [--out DIR]
"""

import argparse
import csv
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from experiments.cli import load_experiment  # noqa: E402
from experiments.core.records import cpu_kind, git_commit  # noqa: E402
from experiments.robust.adversarial import Context, plan, test_subset  # noqa: E402
from experiments.robust.harness import frozen  # noqa: E402
from experiments.robust.steps import RUNNERS  # noqa: E402
from models import sparse_inference  # noqa: E402
from models.pretrained import load_pretrained  # noqa: E402

CONFIG = REPO / "configs" / "mnist_adversarial.yaml"
NETWORKS = ["sparse_cnn2", "sparse_cnn1", "sparse_cnn2_dsw", "dense_cnn2"]
ATTACKS = {"square": "eps=[0.1,0.15]", "sparse_rs": "pixels=[16,39]",
           "autoattack": "eps=[0.15]"}  # AutoAttack: only its Square queries the engine


def step_of(network, attack, engine, images, budget):
    """(cfg, the study's Step) of ``attack`` on ``network`` with ``engine`` on ``images``."""
    overrides = [f"images={images}", budget, f"attacks.{attack}.engine={engine}"]
    cfg = load_experiment(str(CONFIG), overrides).jobs[network]
    (step,) = [s for s in plan(cfg) if s.name == attack or s.name.startswith(f"{attack}_eps")]
    return cfg, step


def timed_step(network, attack, engine, images, budget, folder):
    """(seconds, the step's per-image rows) of one run of the step."""
    cfg, step = step_of(network, attack, engine, images, budget)
    net = load_pretrained(network).eval()
    ctx = Context(cfg, net, 42, *test_subset(cfg), folder)
    start = time.perf_counter()
    with frozen(net):
        frames, _ = RUNNERS[step.method](ctx, step)
    return time.perf_counter() - start, frames[""]


def warm_up(network):
    """Compile the engine's kernels (numba's cache may be cold) before anything is timed."""
    net = load_pretrained(network).eval()
    sparse_inference(net)(torch.zeros(2, 1, 28, 28))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", help="comma-separated network names (default: "
                                       f"{','.join(NETWORKS)})")
    parser.add_argument("--attacks", default="square,sparse_rs",
                        help=f"comma-separated, of {', '.join(ATTACKS)}")
    parser.add_argument("--out", default="results/query_engine")
    parser.add_argument("--note", default="not recorded", help="what else ran")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the study's jobs run (--threads 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="query-engine-"))  # the steps' FAB-T caches
    rows = []
    for network in args.only.split(",") if args.only else NETWORKS:
        warm_up(network)
        for attack in args.attacks.split(","):
            budget = ATTACKS[attack]
            seconds, frames = {"plain": [], "sparse": []}, {}
            if attack == "autoattack":  # FAB-T runs once per job (no queries of the engine):
                timed_step(network, attack, "plain", args.images, budget, work / network)
            for r in range(args.rounds):
                for engine in ("plain", "sparse") if r % 2 == 0 else ("sparse", "plain"):
                    s, frames[engine] = timed_step(network, attack, engine, args.images, budget,
                                                   work / network)
                    seconds[engine].append(s)
            plain, sparse = (statistics.median(seconds[e]) for e in ("plain", "sparse"))
            plain_c, sparse_c = frames["plain"]["correct"], frames["sparse"]["correct"]
            rows.append({"network": network, "attack": attack, "budgets": budget.split("=")[1],
                         "plain_s": round(plain, 1), "sparse_s": round(sparse, 1),
                         "speedup": round(plain / sparse, 2),
                         "robust_plain": int(frames["plain"]["correct"].sum()),
                         "robust_sparse": int(frames["sparse"]["correct"].sum()),
                         "rows": len(plain_c),
                         "fooled_plain_only": int(((plain_c == 0) & (sparse_c == 1)).sum()),
                         "fooled_sparse_only": int(((plain_c == 1) & (sparse_c == 0)).sum())})
            print(rows[-1], flush=True)
    write(out, rows, args)
    shutil.rmtree(work)
    return 0


def write(out, rows, args):
    with open(out / "queries.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = "python benchmarks/bench_query_engine.py " + shlex.join(sys.argv[1:])
    total = [sum(r[k] for r in rows) for k in ("plain_s", "sparse_s")]
    lines = ["# Query-only attacks: the network against models.sparse_inference", "",
             f"Written by `{command.strip()}`. CPU: {cpu_kind()}; 1 thread; torch "
             f"{torch.__version__}; commit {git_commit()}; the first {args.images} images of "
             f"the study's subset, seed-42 weights, the study's budgets (Square 500 queries, "
             f"Sparse-RS 1,000 per pixel budget, AutoAttack's standard version, timed with its "
             f"FAB-T examples made beforehand, as a job's steps after its first find them); "
             f"medians of {args.rounds} runs each, alternating. Robust: images still correct, "
             f"summed over the budgets (the plain forward pass decides on both sides). A "
             f"search's random draws are shared by its batch, so one decision that differs (two "
             f"logits within float32 rounding) reshuffles every later draw of the batch: a "
             f"differing row is another random search, not a wrong verdict. Conditions: "
             f"{args.note}.", "",
             "| network | attack | budgets | plain (s) | sparse (s) | speed-up | robust, plain "
             "| robust, sparse | rows fooled by plain only / sparse only |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['attack']} | {r['budgets']} | {r['plain_s']} | "
              f"{r['sparse_s']} | {r['speedup']:.2f}x | {r['robust_plain']} | "
              f"{r['robust_sparse']} | {r['fooled_plain_only']} / {r['fooled_sparse_only']} "
              f"of {r['rows']} |" for r in rows]
    lines += [f"| all | | | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.2f}x | | | |",
              ""]
    (out / "queries.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
