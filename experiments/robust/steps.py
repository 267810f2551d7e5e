"""What each kind of step of an adversarial job does (adversarial.py plans and runs them).

Every runner takes the job's Context and a Step and returns (frames, summary): frames maps a
suffix to per-image rows (the step's attacks/<step>.csv, and attacks/<step>-<suffix>.csv for
any other), summary the step's metrics line. An attack works only on the images the network
classifies correctly (the others count as fooled, with x' = x); its x' are checked against the
threat model and re-classified by a plain forward pass, which is what is recorded.

    clean          correct, and whether the input gradient is exactly zero (CE, margin)
    fgsm, pgd,     L-inf, per eps: correct
    square,
    transfer
    autoattack     L-inf, per eps: correct, the standard attack that fooled the image, and
                   FAB-T's minimum L-inf distance (the same on every eps row)
    ddn            L2: the minimum distance found (0 for a misclassified clean image, inf
                   where none was found)
    sparse_rs      L0, per pixel budget t in increasing order: correct; an image fooled with
                   t pixels keeps that x' for every larger t (it changes at most t pixels)
    random_pixels  L0: the paper's noise with t pixels, on every image (not an attack)
    diagnostics    per image and gradient (own, each surrogate): diagnostics.py's measures;
                   -curves: the margin loss along the gradient's sign
"""

import dataclasses
import hashlib
import json
import math
import time
import zlib

import pandas as pd
import torch

from data.noise import add_pixel_noise
from experiments.core.records import save_torch
from experiments.core.runs import run_lock
from experiments.core.trained import load_network
from experiments.robust import autoattack as aa
from experiments.robust.attacks import (ddn, eot_gradient, fgsm, input_gradient, pgd,
                                        pgd_targeted, square)
from experiments.robust.config import MNIST_PIXELS
from experiments.robust.diagnostics import finite_difference, gradient_stats
from experiments.robust.harness import (PixelModel, bounds, check_constraints, frozen, predict,
                                        project)
from experiments.robust.l0 import check_pixels, sparse_rs
from models import KWinners, KWinners2d, surrogate_gradients

TRANSFER_WAIT_SECONDS = 3600  # a job waits this long for another that makes the same examples


def step_generator(cfg, name, budget):
    """The random draws of one (step, budget): the same on every network and every rerun."""
    return torch.Generator().manual_seed(zlib.crc32(f"{cfg.seed}/{name}/{budget}".encode()))


def has_k_winners(net):
    return any(isinstance(m, (KWinners, KWinners2d)) for m in net.modules())


def in_batches(fn, x, y, batch_size):
    """``fn(x_batch, y_batch)`` over consecutive batches, concatenated."""
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size])
                      for i in range(0, len(x), batch_size)])


def _subset(ctx, step):
    n = step.images
    return ctx.x[:n], ctx.y[:n], ctx.clean[:n], ctx.index[:n].tolist()


def clean_step(ctx, step):
    """Rows of the clean images: correct, and whether the input gradient is exactly zero."""
    rows = {"image": ctx.index.tolist(), "eps": 0.0, "correct": ctx.clean.int().tolist()}
    for loss in ("ce", "margin"):
        zero = in_batches(lambda x, y: zero_gradient(ctx.model, x, y, loss), ctx.x, ctx.y,
                          ctx.cfg.batch_size)
        rows[f"zero_grad_{loss}"] = zero.int().tolist()
    return {"": pd.DataFrame(rows)}, {
        "results": [{"eps": 0.0, "accuracy": ctx.clean.double().mean().item()}],
        "zero_gradient": {loss: sum(rows[f"zero_grad_{loss}"]) for loss in ("ce", "margin")}}


def zero_gradient(model, x, y, loss):
    """(B,) whether the input gradient of ``loss`` is exactly zero in every pixel."""
    return (input_gradient(model, x, y, loss)[1].flatten(1) == 0).all(1)


# ---------------------------------------------------------------- L-inf

def craft(ctx, step, eps, x, y):
    """x' of the L-inf attack of ``step`` on images x (all classified correctly), through
    the step's surrogate gradient."""
    model, restarts = ctx.model, ctx.cfg.restarts
    generator = step_generator(ctx.cfg, step.name, eps)
    gradient = (eot_gradient(step.eot, step.eot_std, generator) if step.eot
                else input_gradient)
    attack = {"fgsm": lambda xb, yb: fgsm(model, xb, yb, eps, step.loss),
              "pgd": lambda xb, yb: (
                  pgd_targeted(model, xb, yb, eps, step.steps, step.targets, generator)
                  if step.targets else pgd(model, xb, yb, eps, step.steps, step.loss,
                                           restarts, generator, gradient=gradient)),
              "square": lambda xb, yb: square(ctx.query_model(step), xb, yb, eps, step.steps,
                                              step.loss, generator)}[step.method]
    with surrogate_gradients(ctx.net, step.surrogate, step.temperature):
        return in_batches(attack, x, y, ctx.cfg.batch_size)


def linf_rows(ctx, step, eps, adv, y, images, extra=None):
    """The recorded rows and result of x' ``adv`` at ``eps``: a plain forward pass decides."""
    largest = check_constraints(adv, ctx.x[:len(adv)], eps)
    correct = predict(ctx.model, adv, ctx.cfg.batch_size) == y
    rows = pd.DataFrame({"image": images, "eps": eps, "correct": correct.int().tolist(),
                         **(extra or {})})
    return rows, {"eps": eps, "accuracy": correct.double().mean().item(),
                  "max_perturbation": largest}


def attack_step(ctx, step):
    """Rows (image, eps, correct) of one L-inf attack at every eps, and its summary per eps."""
    x, y, clean, images = _subset(ctx, step)
    source = transfer_examples(ctx, step).to(x.device) if step.method == "transfer" else None
    rows, results = [], []
    for i, eps in enumerate(step.eps):
        adv = x.clone()
        if source is not None:
            adv[clean] = source[i][:len(x)][clean]
        elif clean.any():
            adv[clean] = craft(ctx, step, eps, x[clean], y[clean])
        part, result = linf_rows(ctx, step, eps, adv, y, images)
        rows.append(part)
        results.append(result)
    return {"": pd.concat(rows, ignore_index=True)}, {"results": results}


def fab_examples(ctx, step, x, y):
    """FAB-T's closest examples and distances on images x (the correctly classified ones of
    the step's subset), made once per job for every eps and kept in the run folder
    (attacks/<attack>-fab.pt, a cache of the step's settings)."""
    cfg = ctx.cfg
    path = ctx.folder / "attacks" / f"{step.name.rsplit('_eps', 1)[0]}-fab.pt"  # one per job
    spec = {"autoattack": dataclasses.asdict(cfg.autoattack), "seed": cfg.seed,
            "index": ctx.index[:step.images].tolist()}
    if path.is_file():
        kept = torch.load(path, weights_only=True)
        if kept["spec"] == spec:
            return kept["adv"].to(x.device), kept["distance"].to(x.device)
    adv, distance = aa.fab_t(ctx.model, x, y, cfg.autoattack, cfg.seed, cfg.batch_size)
    save_torch(path, {"spec": spec, "adv": adv.cpu(), "distance": distance.cpu()})
    return adv, distance


def autoattack_step(ctx, step):
    """AutoAttack's standard version at the step's eps (autoattack.py), its warnings kept."""
    x, y, clean, images = _subset(ctx, step)
    cfg, (eps,), warnings = ctx.cfg, step.eps, []
    adv, fooled_by, chain = x.clone(), [""] * len(x), {}
    distance = torch.zeros(len(x), dtype=torch.float64)
    with aa.warnings_kept(warnings):
        aa.library_checks(ctx.model, x[clean], y[clean], cfg.autoattack, cfg.batch_size)
        fab = fab_examples(ctx, step, x[clean], y[clean])
        distance[clean.cpu()] = fab[1].double().cpu()
        if clean.any():
            adv[clean], by, chain = aa.chain(ctx.model, x[clean], y[clean], eps, fab,
                                             cfg.autoattack, cfg.seed, cfg.batch_size, len(x),
                                             ctx.query_model(step))
            for i, name in zip(clean.nonzero().squeeze(1).tolist(), by):
                fooled_by[i] = name
    adv = project(adv.detach(), *bounds(x, eps))  # the library clamps in float32
    rows, result = linf_rows(ctx, step, eps, adv, y, images,
                             {"fooled_by": fooled_by, "fab_distance": distance.tolist()})
    return {"": rows}, {"results": [{**result, "chain": chain, "warnings": warnings}]}


# ---------------------------------------------------------------- L2 and L0

def ddn_step(ctx, step):
    """Rows (image, distance): DDN's minimum L2 distance, checked by a plain forward pass."""
    x, y, clean, images = _subset(ctx, step)
    distance = torch.zeros(len(x), dtype=torch.float64)
    if clean.any():
        with surrogate_gradients(ctx.net, step.surrogate, step.temperature):
            adv, found = zip(*[ddn(ctx.model, xb, yb, step.steps) for xb, yb in zip(
                x[clean].split(ctx.cfg.batch_size), y[clean].split(ctx.cfg.batch_size))])
        adv, found = torch.cat(adv), torch.cat(found)
        wrong = predict(ctx.model, adv, ctx.cfg.batch_size) != y[clean]
        measured = (adv - x[clean]).flatten(1).double().norm(dim=1)
        distance[clean.cpu()] = torch.where(wrong & found.isfinite(), measured,
                                            math.inf).cpu()
    rows = pd.DataFrame({"image": images, "distance": distance.tolist()})
    finite = distance[distance.isfinite()]
    return {"": rows}, {"results": [{
        "median_distance": float(distance.median()), "found": int(finite.numel()),
        "largest_found": float(finite.max()) if len(finite) else 0.0}]}


def l0_rows(ctx, pixels, adv, y, images):
    largest = check_pixels(adv, ctx.x[:len(adv)], pixels)
    correct = predict(ctx.model, adv, ctx.cfg.batch_size) == y
    return (pd.DataFrame({"image": images, "pixels": pixels, "correct": correct.int().tolist()}),
            {"pixels": pixels, "accuracy": correct.double().mean().item(),
             "max_changed": largest}, correct)


def sparse_rs_step(ctx, step):
    """Rows (image, pixels, correct) of Sparse-RS at each pixel budget, smallest first."""
    x, y, clean, images = _subset(ctx, step)
    adv, robust = x.clone(), clean.clone()
    rows, results = [], []
    for pixels in step.eps:
        todo = robust.nonzero().squeeze(1)
        if len(todo):
            generator = step_generator(ctx.cfg, step.name, pixels)
            adv[todo] = in_batches(lambda xb, yb: sparse_rs(
                ctx.query_model(step), xb, yb, pixels, step.steps, step.loss, generator),
                x[todo], y[todo], ctx.cfg.batch_size)
        part, result, robust = l0_rows(ctx, pixels, adv, y, images)
        rows.append(part)
        results.append(result)
    return {"": pd.concat(rows, ignore_index=True)}, {"results": results}


def random_pixels_step(ctx, step):
    """Rows (image, pixels, correct) under the paper's noise with that many pixels."""
    x, y, _, images = _subset(ctx, step)
    rows, results = [], []
    for pixels in step.eps:
        noisy = add_pixel_noise(x.cpu(), pixels / MNIST_PIXELS,
                                step_generator(ctx.cfg, step.name, pixels)).to(x.device)
        part, result, _ = l0_rows(ctx, pixels, noisy, y, images)
        rows.append(part)
        results.append(result)
    return {"": pd.concat(rows, ignore_index=True)}, {"results": results}


# ---------------------------------------------------------------- diagnostics

def gradients(ctx):
    """(label, surrogate, temperature) of the network's own gradient and of every surrogate
    that the job's gradient attacks use (none on a network without k-winners)."""
    found = {("own", None, None)}
    if has_k_winners(ctx.net):
        found |= {(a.surrogate if a.temperature is None else f"{a.surrogate}@{a.temperature:g}",
                   a.surrogate, a.temperature) for a in ctx.cfg.attacks.values() if a.surrogate}
    return sorted(found, key=lambda g: (g[1] is not None, g[0]))


def diagnostics_step(ctx, step):
    """Per image and gradient: norm, alignment with finite differences, loss along it."""
    x, y, clean, images = _subset(ctx, step)
    fd = {h: finite_difference(ctx.model, x, y, h) for h in step.eps}
    reach, rows, curves = max(ctx.cfg.eps), [], []
    for label, mode, temperature in gradients(ctx):
        with surrogate_gradients(ctx.net, mode, temperature):
            stats, curve = gradient_stats(ctx.model, x, y, fd, reach, step.steps)
        rows.append(pd.DataFrame({"image": images, "gradient": label,
                                  "clean": clean.int().tolist(),
                                  **{k: v.tolist() for k, v in stats.items()}}))
        alphas = torch.linspace(0, reach, step.steps).tolist()
        curves.append(pd.DataFrame({"image": [i for i in images for _ in alphas],
                                    "gradient": label, "alpha": alphas * len(images),
                                    "margin": curve.flatten().tolist()}))
    return ({"": pd.concat(rows, ignore_index=True),
             "curves": pd.concat(curves, ignore_index=True)},
            {"results": [{"gradients": [g[0] for g in gradients(ctx)], "reach": reach}]})


RUNNERS = {"clean": clean_step, "fgsm": attack_step, "pgd": attack_step, "square": attack_step,
           "transfer": attack_step, "autoattack": autoattack_step, "ddn": ddn_step,
           "sparse_rs": sparse_rs_step, "random_pixels": random_pixels_step,
           "diagnostics": diagnostics_step}


# ---------------------------------------------------------------- the transfer attack's source

def transfer_spec(ctx, step):
    """What makes the source's adversarial examples: their identity in the cache."""
    cfg = ctx.cfg
    return {"source": cfg.transfer_from, "seed": ctx.seed, "trained": cfg.source,
            "runs": cfg.runs if cfg.source != "pretrained" else None,
            "checkpoint": cfg.checkpoint, "loss": step.loss, "surrogate": step.surrogate,
            "steps": step.steps, "restarts": cfg.restarts, "eps": list(step.eps),
            "attack_seed": cfg.seed, "index": ctx.index.tolist()}


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
