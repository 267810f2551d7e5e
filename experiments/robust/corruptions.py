"""One corruptions job: a trained network on the MNIST test images, clean and under every
corruption of data/corruptions.py at every severity.

The corrupted images of (corruption, severity) are drawn from the config's ``seed`` alone, so
every network sees the same ones (paired comparisons). metrics.jsonl gets a line for the clean
images, then one per finished corruption: its title, parameter and amounts (so that the report
reads no code of data/), and per severity the number of correct images; a rerun skips the
finished corruptions.
"""

import time
import zlib

import torch

from data import dataset_info
from data.corruptions import CORRUPTIONS
from experiments.core.lifecycle import open_run
from experiments.core.trained import load_network
from experiments.robust.harness import PixelModel, frozen, predict, test_images

CLEAN = "clean"


def corruption_generator(cfg, name, severity):
    return torch.Generator().manual_seed(zlib.crc32(f"{cfg.seed}/{name}/{severity}".encode()))


def evaluate(model, cfg, name, x, y):
    """The metrics line of corruption ``name`` (or the clean images) on ``x``, ``y``."""
    t0 = time.perf_counter()
    severities = [0] if name == CLEAN else list(cfg.severities)
    correct = []
    for severity in severities:
        images = x if name == CLEAN else CORRUPTIONS[name](
            x, severity, corruption_generator(cfg, name, severity))
        correct.append(int((predict(model, images.to(cfg.device), cfg.batch_size)
                            == y.to(cfg.device)).sum()))
    record = {"corruption": name, "severity": severities, "correct": correct, "images": len(y),
              "accuracy": [c / len(y) for c in correct]}
    if name != CLEAN:
        c = CORRUPTIONS[name]
        record.update(title=c.title, parameter=c.parameter,
                      amounts=[c.amounts[s - 1] for s in severities])
    return {**record, "seconds": round(time.perf_counter() - t0, 2)}


def run_job(cfg, network, seed, folder, progress=True):
    """Evaluate the trained ``network`` of ``seed`` under every corruption; return the records."""
    with open_run(folder, cfg, network, seed, dataset_info(cfg.data)) as run:
        if run.finished:
            return run.records
        net, label, origin = load_network(cfg, network, seed)
        model = PixelModel(net.to(cfg.device))
        x, y = test_images(cfg.data)
        names = [CLEAN, *cfg.corruptions]
        todo = [n for n in names if n not in {r["corruption"] for r in run.records}]
        run.start(cfg.device, len(names) - len(todo), len(names))
        with frozen(net):
            for name in todo:
                record = evaluate(model, cfg, name, x, y)
                if name == CLEAN:
                    record.update(label=cfg.label or label, weights=origin)
                run.add(record)
                if progress:
                    scores = ", ".join(f"{100 * a:.1f}%" for a in record["accuracy"])
                    print(f"  {network}: {name} {scores} ({record['seconds']:.0f} s)",
                          flush=True)
    return run.records


def summary(network, seed, records):
    seconds = sum(r["seconds"] for r in records)
    return f"{network} seed {seed}: {len(records) - 1} corruptions ({seconds:.0f} s)"
