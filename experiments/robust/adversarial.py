"""One adversarial job: a trained network (network, seed) under every attack of its config, on
a fixed random subset of the MNIST test images (the same for every network).

A job is a list of steps (``plan``): the clean images; each attack at every budget of its
threat model (L-inf: every eps, PGD also at eps = 1, where the ball holds the whole box; L0:
every pixel budget; L2: DDN's minimum norm); the convergence runs (PGD again with more steps on
the first images of the subset); the gradient diagnostics. What each step does and records is
in steps.py. The run folder gets

    attacks/<step>.csv  per image (its index in the test set) and budget, as steps.py says
    metrics.jsonl       one line per finished step: its settings, its results per budget,
                        seconds (or why it was skipped)

and a rerun skips the finished steps whose settings are unchanged; a step whose settings
changed, or that the config no longer lists, loses its records and (if listed) runs again.
The transfer attack evaluates adversarial examples that PGD made on the ``transfer_from``
network; they are computed once per (source, seed, settings) and kept in
<experiment>/transfer/<source>-seed-<seed>-<hash>/examples.pt for every job of the experiment
(a cache: deleting it costs one PGD run on the source).
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from data import dataset_info
from experiments.core.config import ConfigError
from experiments.core.lifecycle import open_run
from experiments.core.records import atomic_write
from experiments.core.trained import load_network
from experiments.robust import autoattack as aa
from experiments.robust.checks import FULL_BOX, NOT_ITS_KIND
from experiments.robust.config import default_budget, threat
from experiments.robust.harness import PixelModel, frozen, predict, test_images
from experiments.robust.steps import RUNNERS, has_k_winners
from models import sparse_inference


@dataclass(frozen=True)
class Step:
    name: str  # its records' name: clean, an attack's name, <attack>@<steps>, diagnostics
    role: str  # clean | attack (in its threat's worst case) | convergence (also) | min-norm |
    #            diagnostic
    method: str  # clean | a method of config.METHODS | diagnostics
    eps: tuple  # the budgets: L-inf eps, L0 pixel counts; diagnostics: finite-difference steps
    images: int  # the first N images of the subset
    loss: str = "ce"
    surrogate: Optional[str] = None
    steps: int = 0  # PGD or DDN steps, Square or Sparse-RS queries; diagnostics: curve points
    temperature: Optional[float] = None
    eot: int = 0
    eot_std: float = 0.0
    threat: str = "linf"
    targets: int = 0  # PGD: target classes, one run each (0: untargeted)
    engine: str = "plain"  # Square, Sparse-RS, AutoAttack's Square: what answers their queries
    #                        (config.ENGINES)


def attack_plan(cfg, name, a):
    """The Steps of attack ``name`` (an AttackConfig): one, or for AutoAttack one per eps,
    largest first (the cheapest and most telling first; a stopped job keeps the eps done)."""
    kind = threat(a.method)
    budgets = {"l0": tuple(cfg.pixels), "l2": ()}.get(kind, tuple(cfg.eps))
    if a.method == "pgd" and not a.eot:
        budgets += (FULL_BOX,)
    step = Step(name, "min-norm" if kind == "l2" else "attack", a.method, budgets,
                min(a.images or cfg.images, cfg.images), a.loss, a.surrogate,
                a.budget or default_budget(cfg, a.method), a.temperature, a.eot,
                a.eot_std if a.eot else 0.0, kind, a.targets, a.engine)
    if a.method != "autoattack":
        return [step]
    return [dataclasses.replace(step, name=f"{name}_eps{eps:g}", eps=(eps,))
            for eps in sorted(budgets, reverse=True)]


def plan(cfg):
    """Every step of a job, in order: clean, the diagnostics (cheap, and telling how far to
    trust a gradient), the attacks in the config's order, the convergence runs."""
    n = cfg.images
    steps = [Step("clean", "clean", "clean", (0.0,), n)]
    if cfg.diagnostics.images:
        steps.append(Step("diagnostics", "diagnostic", "diagnostics",
                          tuple(cfg.diagnostics.fd_steps), min(cfg.diagnostics.images, n),
                          "margin", steps=cfg.diagnostics.points))
    steps += [s for name, a in cfg.attacks.items() for s in attack_plan(cfg, name, a)]
    check = cfg.convergence
    for name in check.attacks if check.images else ():
        (base,) = attack_plan(cfg, name, cfg.attacks[name])
        steps.append(dataclasses.replace(base, name=f"{name}@{check.steps}", role="convergence",
                                         eps=tuple(cfg.eps), images=min(check.images, n),
                                         steps=check.steps))
    return steps


def settings(step):
    """What a step's record must match for a rerun to keep it."""
    fields = dataclasses.asdict(step)
    fields.pop("name")
    fields["eps"] = list(step.eps)
    return fields


def base_name(step):
    """The attack a step belongs to: its name, or the AutoAttack entry of a per-eps step."""
    return step.name.rsplit("_eps", 1)[0] if step.method == "autoattack" else step.name


def unchanged(record, step):
    """Whether ``record`` was made by ``step``'s settings (fields it predates: defaults)."""
    defaults = settings(Step("", "", "", (), 0))
    return all(record.get(key, defaults[key]) == value for key, value in settings(step).items()
               if key != "eps") and list(record.get("eps", [])) == list(step.eps)


def test_subset(cfg):
    """(pixels (N, 1, 28, 28) in [0, 1], labels (N,), test-set indices (N,)): ``cfg.images``
    test images drawn at random with ``subset_seed``, in test-set order."""
    pixels, labels = test_images(cfg.data)
    if cfg.images > len(labels):
        raise ConfigError(f"images: {cfg.images} asked for, the test set has {len(labels)}")
    generator = torch.Generator().manual_seed(cfg.subset_seed)
    index = torch.randperm(len(labels), generator=generator)[:cfg.images].sort().values
    return pixels[index], labels[index], index


class Context:
    """What the steps of one job share: the network, the images, the clean predictions."""

    def __init__(self, cfg, net, seed, x, y, index, folder):
        self.cfg, self.net, self.seed = cfg, net, seed
        self.folder, self.exp_dir = Path(folder), Path(folder).parent.parent
        self.model = PixelModel(net)
        self.x, self.y, self.index = x, y, index
        self.clean = predict(self.model, x, cfg.batch_size) == y  # (N,)
        self._engine = None

    def query_model(self, step):
        """What answers ``step``'s queries: the network on pixels, or with ``engine: sparse``
        its ``models.sparse_inference`` engine (made once per job; the network is in eval
        mode and frozen while a step runs). Only the search asks it; every verdict recorded
        is ``self.model``'s."""
        if step.engine == "plain":
            return self.model
        if self._engine is None:
            self._engine = PixelModel(sparse_inference(self.net.eval()))
        return self._engine


def skip_reason(ctx, step):
    """Why ``step`` does not run on this network, or None."""
    if step.surrogate and not has_k_winners(ctx.net):
        return NOT_ITS_KIND
    if step.method == "autoattack" and not aa.installed():
        return f"{aa.MISSING} ({aa.INSTALL})"
    return None


# ---------------------------------------------------------------- the job

def run_step(ctx, step):
    """(per-image frames by suffix, or None; the step's metrics line, with its wall and CPU
    seconds: on a shared machine the second is the cost)."""
    t0, c0 = time.perf_counter(), time.process_time()
    record = {"attack": step.name, "base": base_name(step), **settings(step)}
    reason = skip_reason(ctx, step)
    if reason:
        return None, {**record, "skipped": reason}
    with frozen(ctx.net):
        frames, summary = RUNNERS[step.method](ctx, step)
    return frames, {**record, **summary, "seconds": round(time.perf_counter() - t0, 2),
                    "cpu_seconds": round(time.process_time() - c0, 2)}


def csv_path(folder, name, suffix=""):
    return Path(folder) / "attacks" / f"{name}{'-' + suffix if suffix else ''}.csv"


def resume(run, steps):
    """Keep the records of finished steps whose settings are unchanged; drop the others and
    their CSVs (a pending step, skipped for want of a package, is retried)."""
    by_name = {s.name: s for s in steps}
    keep = [r for r in run.records if not pending(r) and r["attack"] in by_name
            and unchanged(r, by_name[r["attack"]])]
    for r in run.records:
        if r not in keep:
            for path in (run.folder / "attacks").glob(f"{r['attack']}*.csv"):
                if path.stem == r["attack"] or path.stem.startswith(f"{r['attack']}-"):
                    path.unlink()
    run.keep(keep)


def run_job(cfg, network, seed, folder, progress=True):
    """Attack the trained ``network`` of ``seed``; return the run's records."""
    with open_run(folder, cfg, network, seed, dataset_info(cfg.data)) as run:
        if run.finished:
            return run.records
        net, label, origin = load_network(cfg, network, seed)
        steps = plan(cfg)
        resume(run, steps)
        todo = [s for s in steps if s.name not in {r["attack"] for r in run.records}]
        run.start(cfg.device, len(steps) - len(todo), len(steps))
        ctx = Context(cfg, net.to(cfg.device), seed, *_on(test_subset(cfg), cfg.device),
                      run.folder)
        for step in todo:
            frames, record = run_step(ctx, step)
            if step.method == "clean":
                record.update(label=cfg.label or label, weights=origin)
            for suffix, rows in (frames or {}).items():
                atomic_write(csv_path(run.folder, step.name, suffix),
                             rows.to_csv(index=False, float_format="%.6g"))  # 6 digits: small
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
    """One line: a step's result per budget and its time, or why it was skipped."""
    if "skipped" in record:
        return f"{record['attack']} skipped ({record['skipped']})"
    scores = ", ".join(describe_result(r) for r in record["results"])
    return (f"{record['attack']}: {scores} ({record['seconds']:.0f} s, "
            f"{record['cpu_seconds']:.0f} s CPU)")


def describe_result(result):
    if "eps" in result:
        return f"eps {result['eps']:g} {100 * result['accuracy']:.1f}%"
    if "pixels" in result:
        return f"{result['pixels']} px {100 * result['accuracy']:.1f}%"
    if "median_distance" in result:
        return f"median L2 {result['median_distance']:.3g}"
    return f"{len(result.get('gradients', []))} gradients"


def summary(network, seed, records):
    seconds = sum(r.get("seconds", 0) for r in records)
    missing = [r["attack"] for r in records if pending(r)]
    rest = f"; {', '.join(missing)} pending ({aa.INSTALL})" if missing else ""
    return f"{network} seed {seed}: {len(records)} steps ({seconds:.0f} s){rest}"
