"""One adversarial job: a trained network (network, seed) under every attack of its config, on
a fixed random subset of the MNIST test images (the same for every network).

A job is a list of steps (``plan``): the clean images, each attack at every eps (PGD also at
eps = 1, where the ball holds the whole box), the convergence runs (PGD again with more steps on
the first images of the subset) and the AutoAttack cross-check. Every step attacks only the
images the network classifies correctly (the others count as fooled, with x' = x), checks
that each x' lies in the threat model's set, and then re-classifies every x' by a plain
forward pass: that, not the attack's own bookkeeping, is what is recorded. The run folder gets

    attacks/<step>.csv  per image (its index in the test set) and eps: correct (0/1); the clean
                        step also: whether the input gradient of the CE / margin loss is
                        exactly zero everywhere (the network's own backward pass)
    metrics.jsonl       one line per finished step: its settings, accuracy and largest
                        |x' - x| per eps, seconds (or why it was skipped)

and a rerun skips the finished steps. The transfer attack evaluates adversarial examples that
PGD made on the ``transfer_from`` network; they are computed once per (source, seed, settings)
and kept in <experiment>/transfer/<source>-seed-<seed>-<hash>/examples.pt for every job of the
experiment (a cache: deleting it costs one PGD run on the source).
"""

import dataclasses
import hashlib
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
import torch

from data import dataset_info
from experiments.core.config import ConfigError
from experiments.core.lifecycle import open_run
from experiments.core.records import atomic_write, save_torch
from experiments.core.runs import run_lock
from experiments.core.trained import load_network
from experiments.robust import autoattack as aa
from experiments.robust.attacks import fgsm, input_gradient, pgd, square
from experiments.robust.checks import FULL_BOX
from experiments.robust.harness import (PixelModel, bounds, check_constraints, frozen, predict,
                                        project, test_images)
from models import KWinners, KWinners2d, surrogate_gradients

TRANSFER_WAIT_SECONDS = 3600  # a job waits this long for another that makes the same examples


@dataclass(frozen=True)
class Step:
    name: str  # its records' name: clean, an attack's name, <attack>@<steps>, autoattack
    role: str  # clean | attack (in the worst case) | convergence | crosscheck
    method: str  # clean | fgsm | pgd | square | transfer | autoattack
    eps: tuple
    images: int  # the first N images of the subset
    loss: str = "ce"
    surrogate: Optional[str] = None
    steps: int = 0  # PGD steps, or Square queries


def plan(cfg):
    """Every step of a job, in order."""
    n, eps = cfg.images, tuple(cfg.eps)
    steps = [Step("clean", "clean", "clean", (0.0,), n)]
    for name, a in cfg.attacks.items():
        budget = {"pgd": cfg.steps, "square": cfg.queries, "transfer": cfg.steps}
        steps.append(Step(name, "attack", a.method,
                          eps + ((FULL_BOX,) if a.method == "pgd" else ()), n, a.loss,
                          a.surrogate, budget.get(a.method, 1)))
    check = cfg.convergence
    for name in check.attacks if check.images else ():
        a = cfg.attacks[name]
        steps.append(Step(f"{name}@{check.steps}", "convergence", "pgd", eps,
                          min(check.images, n), a.loss, a.surrogate, check.steps))
    if cfg.autoattack.images:
        steps.append(Step("autoattack", "crosscheck", "autoattack", tuple(cfg.autoattack_eps),
                          min(cfg.autoattack.images, n)))
    return steps


def test_subset(cfg):
    """(pixels (N, 1, 28, 28) in [0, 1], labels (N,), test-set indices (N,)): ``cfg.images``
    test images drawn at random with ``subset_seed``, in test-set order."""
    pixels, labels = test_images(cfg.data)
    if cfg.images > len(labels):
        raise ConfigError(f"images: {cfg.images} asked for, the test set has {len(labels)}")
    generator = torch.Generator().manual_seed(cfg.subset_seed)
    index = torch.randperm(len(labels), generator=generator)[:cfg.images].sort().values
    return pixels[index], labels[index], index


def step_generator(cfg, name, eps):
    """The random draws of one (step, eps): the same on every network and every rerun."""
    return torch.Generator().manual_seed(zlib.crc32(f"{cfg.seed}/{name}/{eps}".encode()))


def has_k_winners(net):
    return any(isinstance(m, (KWinners, KWinners2d)) for m in net.modules())


class Context:
    """What the steps of one job share: the network, the images, the clean predictions."""

    def __init__(self, cfg, net, seed, x, y, index, exp_dir):
        self.cfg, self.net, self.seed, self.exp_dir = cfg, net, seed, Path(exp_dir)
        self.model = PixelModel(net)
        self.x, self.y, self.index = x, y, index
        self.clean = predict(self.model, x, cfg.batch_size) == y  # (N,)


def clean_step(ctx, step):
    """Rows of the clean images: correct, and whether the input gradient is exactly zero."""
    rows = {"image": ctx.index.tolist(), "eps": 0.0, "correct": ctx.clean.int().tolist()}
    for loss in ("ce", "margin"):
        zero = in_batches(lambda x, y: zero_gradient(ctx.model, x, y, loss), ctx.x, ctx.y,
                          ctx.cfg.batch_size)
        rows[f"zero_grad_{loss}"] = zero.int().tolist()
    return pd.DataFrame(rows), {
        "results": [{"eps": 0.0, "accuracy": ctx.clean.double().mean().item()}],
        "zero_gradient": {loss: sum(rows[f"zero_grad_{loss}"]) for loss in ("ce", "margin")}}


def zero_gradient(model, x, y, loss):
    """(B,) whether the input gradient of ``loss`` is exactly zero in every pixel."""
    return (input_gradient(model, x, y, loss)[1].flatten(1) == 0).all(1)


def in_batches(fn, x, y, batch_size):
    """``fn(x_batch, y_batch)`` over consecutive batches, concatenated."""
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size])
                      for i in range(0, len(x), batch_size)])


def craft(ctx, step, eps, x, y):
    """x' of the attack of ``step`` on images x (all classified correctly), through the
    step's surrogate gradient."""
    if step.method == "autoattack":  # it clamps in float32: x' may lie a rounding step outside
        adv = aa.autoattack(ctx.model, x, y, eps, ctx.cfg.autoattack, ctx.cfg.seed,
                            ctx.cfg.batch_size)
        return project(adv, *bounds(x, eps))
    model, restarts = ctx.model, ctx.cfg.restarts
    generator = step_generator(ctx.cfg, step.name, eps)
    attack = {"fgsm": lambda xb, yb: fgsm(model, xb, yb, eps, step.loss),
              "pgd": lambda xb, yb: pgd(model, xb, yb, eps, step.steps, step.loss, restarts,
                                        generator),
              "square": lambda xb, yb: square(model, xb, yb, eps, step.steps, step.loss,
                                              generator)}[step.method]
    with surrogate_gradients(ctx.net, step.surrogate):
        return in_batches(attack, x, y, ctx.cfg.batch_size)


def attack_step(ctx, step):
    """Rows (image, eps, correct) of one attack at every eps, and its summary per eps."""
    n, rows, results = step.images, [], []
    x, y, clean = ctx.x[:n], ctx.y[:n], ctx.clean[:n]
    source = transfer_examples(ctx, step).to(x.device) if step.method == "transfer" else None
    for i, eps in enumerate(step.eps):
        adv = x.clone()
        if source is not None:
            adv[clean] = source[i][:n][clean]
        elif clean.any():
            adv[clean] = craft(ctx, step, eps, x[clean], y[clean])
        largest = check_constraints(adv, x, eps)
        correct = predict(ctx.model, adv, ctx.cfg.batch_size) == y
        rows.append(pd.DataFrame({"image": ctx.index[:n].tolist(), "eps": eps,
                                  "correct": correct.int().tolist()}))
        results.append({"eps": eps, "accuracy": correct.double().mean().item(),
                        "max_perturbation": largest})
    return pd.concat(rows, ignore_index=True), {"results": results}


def skip_reason(ctx, step):
    """Why ``step`` does not run on this network, or None."""
    if step.surrogate and not has_k_winners(ctx.net):
        return "no k-winners layer: its gradient is the network's own"
    if step.method == "autoattack" and not aa.installed():
        return f"{aa.MISSING} ({aa.INSTALL})"
    return None


# ---------------------------------------------------------------- the transfer attack's source

def transfer_spec(ctx, step):
    """What makes the source's adversarial examples: their identity in the cache."""
    cfg = ctx.cfg
    return {"source": cfg.transfer_from, "seed": ctx.seed, "trained": cfg.source,
            "runs": cfg.runs if cfg.source == "runs" else None, "checkpoint": cfg.checkpoint,
            "loss": step.loss, "surrogate": step.surrogate, "steps": step.steps,
            "restarts": cfg.restarts, "eps": list(step.eps), "attack_seed": cfg.seed,
            "index": ctx.index.tolist()}


def transfer_examples(ctx, step):
    """(len(eps), N, 1, 28, 28): PGD's x' on the source network for every image of the subset
    (run to the last step, not stopped early: confident examples transfer better). Made once
    per settings, under a lock, so that parallel jobs wait for one another instead of redoing."""
    spec = transfer_spec(ctx, step)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = ctx.exp_dir / "transfer" / f"{spec['source']}-seed-{ctx.seed}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    with run_lock(folder, wait=TRANSFER_WAIT_SECONDS):
        if not (folder / "examples.pt").is_file():
            adv = source_examples(ctx, step, spec["source"])
            save_torch(folder / "examples.pt", {"spec": spec, "adv": adv})
        return torch.load(folder / "examples.pt", weights_only=True)["adv"]


def source_examples(ctx, step, source):
    net, _, _ = load_network(ctx.cfg, source, ctx.seed)
    model, examples = PixelModel(net.to(ctx.x.device)), []
    with frozen(net), surrogate_gradients(net, step.surrogate):
        for eps in step.eps:
            generator = step_generator(ctx.cfg, f"transfer-source/{source}", eps)
            examples.append(in_batches(lambda xb, yb: pgd(
                model, xb, yb, eps, step.steps, step.loss, ctx.cfg.restarts, generator,
                stop_early=False), ctx.x, ctx.y, ctx.cfg.batch_size))
    return torch.stack(examples).cpu()


# ---------------------------------------------------------------- the job

def run_step(ctx, step):
    """(rows or None, the step's metrics line)."""
    t0 = time.perf_counter()
    record = {"attack": step.name, **dataclasses.asdict(step)}
    record.pop("name")
    reason = skip_reason(ctx, step)
    if reason:
        return None, {**record, "skipped": reason}
    with frozen(ctx.net):
        rows, summary = (clean_step if step.method == "clean" else attack_step)(ctx, step)
    return rows, {**record, **summary, "seconds": round(time.perf_counter() - t0, 2)}


def run_job(cfg, network, seed, folder, progress=True):
    """Attack the trained ``network`` of ``seed``; return the run's records."""
    with open_run(folder, cfg, network, seed, dataset_info(cfg.data)) as run:
        if run.finished:
            return run.records
        net, label, origin = load_network(cfg, network, seed)
        run.keep(r for r in run.records if not pending(r))
        steps = plan(cfg)
        todo = [s for s in steps if s.name not in {r["attack"] for r in run.records}]
        run.start(cfg.device, len(steps) - len(todo), len(steps))
        ctx = Context(cfg, net.to(cfg.device), seed, *_on(test_subset(cfg), cfg.device),
                      run.folder.parent.parent)
        for step in todo:
            rows, record = run_step(ctx, step)
            if step.method == "clean":
                record.update(label=cfg.label or label, weights=origin)
            if rows is not None:
                atomic_write(run.folder / "attacks" / f"{step.name}.csv",
                             rows.to_csv(index=False))
            run.add(record)
            if progress:
                print(f"  {network}: {describe_record(record)}", flush=True)
        if any(map(pending, run.records)):
            run.unfinished()
    return run.records


def pending(record):
    """Whether a step was skipped only for want of an optional package (a rerun retries it)."""
    return record.get("skipped", "").startswith(aa.MISSING)


def _on(subset, device):
    x, y, index = subset
    return x.to(device), y.to(device), index


def describe_record(record):
    """One line: a step's accuracy per eps and its time, or why it was skipped."""
    if "skipped" in record:
        return f"{record['attack']} skipped ({record['skipped']})"
    scores = ", ".join(f"eps {r['eps']:g} {100 * r['accuracy']:.1f}%" for r in record["results"])
    return f"{record['attack']}: {scores} ({record['seconds']:.0f} s)"


def summary(network, seed, records):
    seconds = sum(r.get("seconds", 0) for r in records)
    missing = [r["attack"] for r in records if pending(r)]
    rest = f"; {', '.join(missing)} pending ({aa.INSTALL})" if missing else ""
    return f"{network} seed {seed}: {len(records)} steps ({seconds:.0f} s){rest}"
