"""The adversarial task: ``python run.py configs/mnist_adversarial.yaml``.

One job per (network, seed): the shipped seed-42 weights by default (``source: pretrained``),
or any train experiment's run folders (``source: runs``, ``runs: results/mnist_table1``, several
seeds). Records: experiments/robust/adversarial.py; report: adversarial_report.py.
"""

from experiments.core.suite import load_suite
from experiments.robust.adversarial import plan, run_job, summary
from experiments.robust.config import ADVERSARIAL_SMOKE, AdversarialConfig
from experiments.robust.suite import run_suite

__all__ = ["load", "run", "describe"]


def load(path, overrides=(), smoke=False):
    return load_suite(path, AdversarialConfig, overrides, smoke, ADVERSARIAL_SMOKE)


def transfer_sources(cfg):
    return [cfg.transfer_from] if any(a.method == "transfer" for a in cfg.attacks.values()) else []


def run(suite, out_root, force=False, launcher="local", **options):
    """Check that every network's weights (and each transfer source's) exist, then attack the
    networks whose jobs are not done."""
    return run_suite(suite, out_root, run_job, summary, force, launcher, options,
                     extra=transfer_sources)


def describe(suite, out_dir):
    """Print each network's steps: method, loss, surrogate gradient, eps, images, budget."""
    for name in suite.run:
        cfg = suite.jobs[name]
        print(f"{name}:")
        for step in plan(cfg):
            eps = ", ".join(f"{e:g}" for e in step.eps)
            print(f"  {step.name:24} {step.method:10} loss {step.loss:6} "
                  f"surrogate {step.surrogate or '-':8} eps [{eps}] on {step.images} images"
                  f"{budget(step, cfg)}")
    print("(a step through a surrogate gradient is skipped on a network without k-winners)")


def budget(step, cfg):
    """What a step spends per image, in words."""
    aa = cfg.autoattack
    return {"pgd": f", {step.steps} steps, up to {cfg.restarts} runs",
            "transfer": f", from {cfg.transfer_from}'s PGD ({step.steps} steps)",
            "square": f", {step.steps} queries",
            "autoattack": f", {'/'.join(aa.attacks)} ({aa.iterations} steps, {aa.targets} "
                          f"targets, {aa.queries} queries)"}.get(step.method, "")
