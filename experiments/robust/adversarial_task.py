"""The adversarial task: ``python run.py configs/mnist_adversarial.yaml``.

One job per (network, seed): the shipped seed-42 weights by default (``source: pretrained``),
or any train experiment's run folders (``source: runs``, ``runs: results/mnist_table1``, several
seeds). Records: experiments/robust/adversarial.py; report: adversarial_report.py.
"""

from pathlib import Path

import pandas as pd

from experiments.core.records import read_jsonl
from experiments.core.task import Task
from experiments.core.trained import check_weights
from experiments.robust import adversarial_report
from experiments.robust import autoattack as aa
from experiments.robust.adversarial import plan, run_job, summary
from experiments.robust.adversarial_report import write_report
from experiments.robust.config import ADVERSARIAL_SMOKE, AdversarialConfig


def transfer_sources(cfg):
    return [cfg.transfer_from] if any(a.method == "transfer" for a in cfg.attacks.values()) else []


def new_steps(cfg, folder):
    """Why a done run must resume: the steps of its plan that it has no record of (attacks
    added to the experiment file since it finished), or None."""
    made = {r["attack"] for r in read_jsonl(Path(folder) / "metrics.jsonl")}
    missing = [s.name for s in plan(cfg) if s.name not in made]
    return f"{len(missing)} new step(s): {', '.join(missing)}" if missing else None


def check(suite):
    """Every network's weights, and each transfer source's, exist."""
    check_weights(suite, transfer_sources)


def describe(suite, out_dir):
    """Print each network's steps: method, loss, surrogate gradient, budgets, images, cost."""
    for name in suite.run:
        cfg = suite.jobs[name]
        print(f"{name}:")
        for step in plan(cfg):
            budgets = ", ".join(f"{e:g}" for e in step.eps)
            surrogate = step.surrogate or "-"
            if step.temperature is not None:
                surrogate += f"@{step.temperature:g}"
            print(f"  {step.name:24} {step.method:13} {step.threat:4} loss {step.loss:6} "
                  f"surrogate {surrogate:10} [{budgets}] on {step.images} images"
                  f"{budget(step, cfg)}")
    print("(a step through a surrogate gradient is skipped on a network without k-winners; "
          "budgets: eps for linf, pixels for l0; diagnostics: finite-difference steps)")


def budget(step, cfg):
    """What a step spends per image, in words."""
    aa = cfg.autoattack
    eot = f", EOT over {step.eot} draws (std {step.eot_std:g})" if step.eot else ""
    runs = (f"a run per target (the {step.targets} likeliest wrong classes)" if step.targets
            else f"up to {cfg.restarts} runs")
    return {"pgd": f", {step.steps} steps, {runs}{eot}",
            "transfer": f", from {cfg.transfer_from}'s PGD ({step.steps} steps)",
            "square": f", {step.steps} queries",
            "autoattack": f", standard: APGD-CE, APGD-T, FAB-T ({aa.iterations} steps, "
                          f"{aa.targets} targets), Square ({aa.queries} queries)",
            "ddn": f", {step.steps} steps",
            "sparse_rs": f", {step.steps} queries per budget",
            "diagnostics": f", {step.steps} points along the gradient"}.get(step.method, "")


def progress_markdown(steps, suite):
    """Markdown: per job of ``suite``, the steps that ran of those planned, their CPU hours
    (wall where a record predates cpu_seconds) and the steps still to run; ``steps`` is
    load_records(...).steps, a row per recorded step."""
    lines = ["| network | seed | steps recorded | CPU hours | still to run |",
             "|---|---|---|---|---|"]
    for name in suite.run:
        planned = [step.name for step in plan(suite.jobs[name])]
        for seed in suite.seeds:
            g = steps[(steps.network == name) & (steps.seed == seed)]
            waiting = g.skipped.fillna("").str.startswith(aa.MISSING)  # retried by a rerun
            ran = set(g.attack[~waiting])
            seconds = g.get("cpu_seconds", pd.Series(dtype=float)).fillna(g.get("seconds"))
            hours = seconds.fillna(0).sum() / 3600
            todo = [n for n in planned if n not in ran]
            lines.append(f"| {name} | {seed} | {len(planned) - len(todo)} of {len(planned)} | "
                         f"{hours:.2f} | {', '.join(todo) or '-'} |")
    return "\n".join(lines) + "\n"


def doc_blocks(exp_dir, suite=None):
    """adversarial_report's blocks, and progress (what ran of the plan; needs the suite)."""
    progress = None if suite is None else (lambda steps: progress_markdown(steps, suite))
    return adversarial_report.doc_blocks(exp_dir, suite, progress)


TASK = Task("adversarial", AdversarialConfig, run_job, summary, report=write_report,
            describe_suite=describe, smoke_overrides=ADVERSARIAL_SMOKE, check=check,
            doc_blocks=doc_blocks, reopen=new_steps)
