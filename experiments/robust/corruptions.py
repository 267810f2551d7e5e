"""One corruptions job: a trained network on the MNIST test images, clean, under MNIST-C's 15
corruptions (data/mnist_c.py, one setting each, as published) and under the extra corruptions
of data/corruptions.py at every severity (kept apart: suite ``extra``).

The corrupted images of (corruption, severity) are drawn from the config's ``seed`` alone, so
every network sees the same ones (paired comparisons). MNIST-C's are made once per experiment
and kept in <experiment>/mnist_c/<corruption>-<hash>.pt (8-bit, as the published set; a cache:
deleting it costs their making again, minutes for fog). metrics.jsonl gets a line for the clean
images, then one per finished corruption: its suite, title and setting or parameter and
amounts (so that the report reads no code of data/), and per severity the number of correct
images; a rerun skips the finished corruptions.
"""

import hashlib
import json
import time
import zlib
from pathlib import Path

import torch

from data import dataset_info
from data.corruptions import CORRUPTIONS
from data.mnist_c import MNIST_C
from experiments.core.config import to_dict
from experiments.core.figures import new_figure, save_png
from experiments.core.lifecycle import open_run
from experiments.core.records import save_torch
from experiments.core.runs import run_lock
from experiments.core.trained import load_network
from experiments.robust.corruptions_report import CLEAN, suite_of
from experiments.robust.harness import PixelModel, frozen, predict, test_images

CACHE_WAIT_SECONDS = 3600  # a job waits this long for another that makes the same images


def corruption_generator(cfg, name, severity):
    return torch.Generator().manual_seed(zlib.crc32(f"{cfg.seed}/{name}/{severity}".encode()))


def mnist_c_images(cfg, name, x, exp_dir):
    """(N, 1, 28, 28) MNIST-C's ``name`` of the test images ``x``, as uint8 in the
    experiment's cache (made under a lock by the first job that needs them)."""
    spec = {"corruption": name, "seed": cfg.seed, "data": to_dict(cfg.data)}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(exp_dir) / "mnist_c" / f"{name}-{digest}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(path.parent, wait=CACHE_WAIT_SECONDS):
        if not path.is_file():
            images = MNIST_C[name](x, corruption_generator(cfg, name, 1))
            save_torch(path, {"spec": spec, "images": (images * 255).round().to(torch.uint8)})
    return torch.load(path, weights_only=True)["images"].float() / 255


def corrupted(cfg, suite, name, severity, x, exp_dir):
    """The images of corruption ``name`` of ``suite`` (clean, mnist_c or extra)."""
    if suite == CLEAN:
        return x
    if suite == "mnist_c":
        return mnist_c_images(cfg, name, x, exp_dir)
    return CORRUPTIONS[name](x, severity, corruption_generator(cfg, name, severity))


def describe(suite, name):
    """The record's fields that say what corruption ``name`` of ``suite`` is."""
    if suite == CLEAN:
        return {}
    if suite == "mnist_c":
        c = MNIST_C[name]
        return {"suite": "mnist_c", "title": c.title, "setting": c.setting,
                "unreadable": [c.unreadable]}
    c = CORRUPTIONS[name]
    return {"suite": "extra", "title": c.title, "parameter": c.parameter}


def evaluate(model, cfg, suite, name, x, y, exp_dir):
    """The metrics line of corruption ``name`` of ``suite`` (or the clean images)."""
    t0, c0 = time.perf_counter(), time.process_time()
    severities = {CLEAN: [0], "mnist_c": [1]}.get(suite, list(cfg.severities))
    correct = []
    for severity in severities:
        images = corrupted(cfg, suite, name, severity, x, exp_dir)
        correct.append(int((predict(model, images.to(cfg.device), cfg.batch_size)
                            == y.to(cfg.device)).sum()))
    record = {"corruption": name, "severity": severities, "correct": correct, "images": len(y),
              "accuracy": [c / len(y) for c in correct], **describe(suite, name)}
    if suite == "extra":
        c = CORRUPTIONS[name]
        record["amounts"] = [c.amounts[s - 1] for s in severities]
        record["unreadable"] = [c.unreadable_from is not None and s >= c.unreadable_from
                                for s in severities]
    return {**record, "seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2)}


def run_job(cfg, network, seed, folder, progress=True):
    """Evaluate the trained ``network`` of ``seed`` under every corruption; return the records."""
    with open_run(folder, cfg, network, seed, dataset_info(cfg.data)) as run:
        if run.finished:
            return run.records
        net, label, origin = load_network(cfg, network, seed)
        model = PixelModel(net.to(cfg.device))
        x, y = test_images(cfg.data)
        items = [(CLEAN, CLEAN), *(("mnist_c", n) for n in cfg.mnist_c),
                 *(("extra", n) for n in cfg.corruptions)]
        done = {(suite_of(r), r["corruption"]) for r in run.records}
        todo = [item for item in items if item not in done]
        run.start(cfg.device, len(items) - len(todo), len(items))
        with frozen(net):
            for suite, name in todo:
                record = evaluate(model, cfg, suite, name, x, y, run.folder.parent.parent)
                if suite == CLEAN:
                    record.update(label=cfg.label or label, weights=origin)
                run.add(record)
                if progress:
                    scores = ", ".join(f"{100 * a:.1f}%" for a in record["accuracy"])
                    print(f"  {network}: {name} {scores} ({record['seconds']:.0f} s)",
                          flush=True)
    return run.records


def mosaic_rows(cfg, x, exp_dir):
    """{mnist_c: [(label, images (k, 1, 28, 28))], extra: [...]}: the first k test images as
    each job sees them (MNIST-C's from the cache; the extras at every severity)."""
    k = cfg.mosaic_images
    return {"mnist_c": [(MNIST_C[n].title, mnist_c_images(cfg, n, x, exp_dir)[:k])
                        for n in cfg.mnist_c],
            "extra": [(f"{CORRUPTIONS[n].title}, severity {s}",
                       corrupted(cfg, "extra", n, s, x, exp_dir)[:k])
                      for n in cfg.corruptions for s in cfg.severities]}


def mosaic_figure(rows, title):
    """One image: a row of digits per (corruption, severity), labelled."""
    gap, side = 2, 28
    k = len(rows[0][1])
    canvas = torch.ones(len(rows) * (side + gap), k * (side + gap))
    for r, (_, images) in enumerate(rows):
        for c, image in enumerate(images):
            top, left = r * (side + gap), c * (side + gap)
            canvas[top:top + side, left:left + side] = image[0]
    fig = new_figure(1.0 + 0.42 * k, 0.5 + 0.42 * len(rows))
    ax = fig.add_subplot()
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([r * (side + gap) + side / 2 for r in range(len(rows))],
                  [label for label, _ in rows], fontsize=7)
    ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    return fig


def write_mosaics(suite, exp_dir):
    """mnist_c_mosaic.png and extra_mosaic.png in the experiment folder (before the jobs:
    this also fills the MNIST-C cache that the jobs then share)."""
    cfg = suite.jobs[suite.run[0]]
    if not cfg.mosaic_images:
        return
    x, _ = test_images(cfg.data)
    titles = {"mnist_c": "MNIST-C as published (one setting each), the first test images",
              "extra": "The extra corruptions at every severity, the first test images"}
    for suite_name, rows in mosaic_rows(cfg, x, exp_dir).items():
        if rows:
            save_png(mosaic_figure(rows, titles[suite_name]),
                     Path(exp_dir) / f"{suite_name}_mosaic.png")


def summary(network, seed, records):
    seconds = sum(r["seconds"] for r in records)
    return f"{network} seed {seed}: {len(records) - 1} corruptions ({seconds:.0f} s)"
