"""Where the sparse engine's time goes: for one shipped network (default Sparse CNN-2), each
block's layer (its kernel, pooling included) and its activation, timed apart on the block's
real input, and the block as the engine runs it (a conv block's k-winners inside its
kernel), beside the engine's whole forward pass and the plain Dense CNN-2's, one thread,
one batch size, real MNIST test images. Every figure is the median of ``--rounds`` rounds in
one process, the items' order reversed every other round. Beside each layer: its effective
multiply-adds per image (models/costs.py, on these images) and the rate it ran them at.
Writes profile_batch<B>.md to ``--out``.

    python benchmarks/profile_inference.py [--network sparse_cnn2] [--batch 256] [--rounds 7]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data import DataConfig, load_dataset  # noqa: E402
from experiments.core.records import cpu_kind, git_commit  # noqa: E402
from models import sparse_inference  # noqa: E402
from models.costs import layer_multiply_adds  # noqa: E402
from models.pretrained import load_pretrained  # noqa: E402

BASELINE = "dense_cnn2"


def per_image_us(fn, images, calls):
    """Microseconds per image of ``calls`` calls of ``fn`` on ``images`` images each."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls / images * 1e6


def block_items(engine, x):
    """{label: fn}: each block's layer alone and its activation alone, on the block's own
    input (the engine's output of the block before it); the block's path by label."""
    items, paths = {}, {}
    h, density = x.contiguous(), None
    for block in engine.blocks:
        activate, pre, out = block.activate, _layer_only(block, h, density), block(h, density)
        items[f"{block.name}: layer"] = lambda b=block, i=h, d=density: _layer_only(b, i, d)
        items[f"{block.name}: activation"] = lambda a=activate, p=pre: a(p.clone())
        items[f"{block.name}: copy"] = lambda p=pre: p.clone()  # subtracted from activation
        items[f"{block.name}: block"] = lambda b=block, i=h, d=density: b(i, d)  # as run
        paths[block.name] = block.path
        h, density = out, block.output_density(out)
    return items, paths


def _layer_only(block, h, density):
    """The block without its activation (an instance attribute over the method, removed;
    a conv block's k-winners taken out of its kernel)."""
    block.activate, fuse = (lambda pre: pre), getattr(block, "fuse", None)
    if fuse is not None:
        block.fuse = False
    try:
        return block(h, density)
    finally:
        del block.activate
        if fuse is not None:
            block.fuse = fuse


def measure(items, images, rounds, calls):
    for fn in items.values():  # first calls (compilation, oneDNN primitives) untimed
        fn()
    times = {label: [] for label in items}
    order = list(items)
    for r in range(rounds):
        for label in order if r % 2 == 0 else order[::-1]:
            times[label].append(per_image_us(items[label], images, calls))
    return {label: statistics.median(t) for label, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="sparse_cnn2")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default="results/inference")
    parser.add_argument("--note", default="not recorded", help="what else ran")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, _ = load_dataset(DataConfig(root=str(REPO / "datasets"))).test_set()
    x = x[:args.batch].contiguous()
    net, dense = load_pretrained(args.network), load_pretrained(BASELINE)
    engine = sparse_inference(net)
    macs = [row["effective"] for row in layer_multiply_adds(net, x)]
    calls = max(1, 2048 // args.batch)
    with torch.inference_mode():
        items, paths = block_items(engine, x)
        items["engine, whole forward pass"] = lambda: engine(x)
        items[f"{BASELINE} plain, whole forward pass"] = lambda: dense(x)
        t = measure(items, len(x), args.rounds, calls)
    lines = ["| block | path | layer (us/image) | activation (us/image) | block as run "
             "(us/image) | effective multiply-adds per image | layer rate (G/s) |",
             "|---|---|---|---|---|---|---|"]
    total = 0.0
    for (name, path), effective in zip(paths.items(), macs):
        layer, block = t[f"{name}: layer"], t[f"{name}: block"]
        act = max(0.0, t[f"{name}: activation"] - t[f"{name}: copy"])
        total += block
        lines.append(f"| {name} | {path} | {layer:.1f} | {act:.1f} | {block:.1f} | "
                     f"{effective:,.0f} | {effective / layer / 1e3:.1f} |")
    whole, base = t["engine, whole forward pass"], t[f"{BASELINE} plain, whole forward pass"]
    lines += ["", f"- sum of the blocks: {total:.1f} us per image",
              f"- the engine's forward pass: {whole:.1f} us per image ({1e6 / whole:,.0f} "
              f"images/s)",
              f"- {BASELINE} plain: {base:.1f} us per image ({1e6 / base:,.0f} images/s): "
              f"the engine runs {base / whole:.2f}x of it"]
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile_batch{args.batch}.md").write_text(
        f"# Where {args.network}'s engine time goes, batch {args.batch}, 1 thread\n\n"
        f"Written by `python benchmarks/profile_inference.py --network {args.network} "
        f"--batch {args.batch} --rounds {args.rounds} --out {args.out}`.\n\n"
        f"- CPU: {cpu_kind()}; torch {torch.__version__}; commit {git_commit()}\n"
        f"- {args.rounds} rounds, medians; {len(x)} real MNIST test images per call; the "
        f"activation's figure has the copy of its input taken off; a conv block runs its "
        f"k-winners inside its kernel, so its layer and activation are timed apart and "
        f"the block as run\n"
        f"- conditions: {args.note}\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
