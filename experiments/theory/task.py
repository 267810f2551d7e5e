"""``python run.py configs/theory.yaml``: section 3's curves, as a suite of one job.

The job (``section3``, seeded by the config's ``seed``) computes and simulates every curve
and writes the CSV behind each into its run folder, results/theory/section3/seed-<seed>/ (with
config.yaml, provenance.json, metrics.jsonl and ``done``, as every job). The report draws the
figures, the published-vs-ours tables and README.md (captions and checks) into
results/theory/ from those files alone.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.config import from_dict
from experiments.core.figures import save_png
from experiments.core.lifecycle import open_run
from experiments.core.records import atomic_write
from experiments.core.runs import load_runs
from experiments.core.suite import Suite
from experiments.core.tables import markdown_table, write_table
from experiments.core.task import Task
from experiments.theory.config import TheoryConfig, theory_config
from experiments.theory.curves import compute_all, curve_label
from experiments.theory.figures import figure2, figure3, heatmap_figure
from experiments.theory.published import PAPER_QUARTER, QUARTER_NOTE

def figure2_caption(cfg, level):
    return (
        f"**Figure 2.** Probability that a random binary vector with a active bits out of n "
        f"matches a stored vector with s = {cfg.stored_active} active bits (overlap >= "
        f"theta = {cfg.threshold}). Lines: the exact hypergeometric tail. Black dots: plain "
        f"Monte-Carlo frequency of {cfg.trials:,} random vectors per point with its {level:.0%} "
        f"Clopper-Pearson interval (points without a single match are left out; see the CSV). "
        f"Open diamonds: importance-sampling estimates ({cfg.importance_trials:,} tilted paths "
        f"per point, {level:.0%} normal interval), which reach probabilities a frequency "
        f"cannot. Red crosses: the paper's published values. The paper's curve labelled "
        f"'a = n/2' was computed with a = n/4 (grey dashed; its published values lie on it): "
        f"the true a = n/2 stays at about 0.58 for every n, i.e. dense vectors never become "
        f"distinguishable.")


def figure3_caption(cfg, level):
    return (
        f"**Figure 3.** Scalar vectors: a weight vector with k_w = {cfg.weight_nonzeros} "
        f"non-zeros ~ U(-1/k_w, 1/k_w) matches an input with a non-zeros ~ U(0, 2S/k_w) when "
        f"w.x >= E[w.w]/2 = 1/(6 k_w). Left: vs n at S = {cfg.left.scale:g}; right: vs S at "
        f"n = {cfg.right.n}. Lines: numerical theory (hypergeometric overlap times the exact "
        f"law of a sum of products of uniforms, on a grid). Black dots: frequency among "
        f"{cfg.pairs:,} independent (weight, input) pairs per point (the paper's {cfg.trials:,} "
        f"trials x {cfg.weights_per_trial} weights x {cfg.inputs_per_trial:,} inputs), "
        f"{level:.0%} Clopper-Pearson interval. Red crosses: the paper's values (its a = n/2 "
        f"curve is only stated as 'about 2.3e-2, flat'). The paper's a = 256 at n = 250 has "
        f"more active inputs than dimensions; clipping a to n (a dense input) reproduces it.")


def heatmap_caption(binary):
    return (
        f"**Extra: P(match) over (n, a).** The exact probability on a log-log grid up to "
        f"n = 10,000 (s = {binary.stored_active}, theta = {binary.threshold}). For a fixed "
        f"a the false-match probability falls roughly like (a/n)^{binary.threshold}, but along "
        f"any line a = c n it converges to a constant (the binomial tail "
        f"P(Bin({binary.stored_active}, c) >= {binary.threshold}), 0.58 for c = 1/2): only "
        f"sparse vectors, a << n, make chance matches rare, and more dimensions help only when "
        f"the activity does not grow with them.")


def agreement(frames):
    """One line per check: how the simulations and our theory compare with each other and
    with the paper."""
    f2, f2p = frames["figure2_simulation"], frames["figure2_published"]
    f3, f3p = frames["figure3_simulation"], frames["figure3_published"]
    big = f2[f2.theory > 1e-4]
    seen = f2[f2.matches >= 10]
    above = f3p[f3p.published > 1e-4]
    quarter = f2p.curve == curve_label(PAPER_QUARTER)
    return [
        f"- Figure 2, exact vs published: largest relative error "
        f"{_max_abs(f2p.rel_error[~quarter]):.1e} over the paper's 9-digit values, "
        f"{_max_abs(f2p.rel_error[quarter]):.1e} on its 4-digit a = n/4 values.",
        f"- Figure 2, frequency: theory inside the interval at {_inside(big, 'ci')} points "
        f"with P > 1e-4; smallest probability resolved with >= 10 matches: "
        f"{seen.theory.min():.2g}; {int((f2.matches == 0).sum())} points saw no match.",
        f"- Figure 2, importance sampling: theory inside the interval at {_inside(f2, 'is_ci')} "
        f"points, down to P = {f2.theory.min():.2g}; the largest interval half-width is "
        f"{_max_abs((f2.is_ci_high - f2.is_estimate) / f2.is_estimate):.1%} of the estimate.",
        f"- Figure 3, simulation vs numerical theory: theory inside the interval at "
        f"{_inside(f3, 'ci')} points.",
        f"- Figure 3 vs published (published > 1e-4): simulation within "
        f"{_max_abs(above.sim_rel_diff):.1%}, numerical theory within "
        f"{_max_abs(above.theory_rel_diff):.1%} relative."]


def _inside(frame, prefix):
    ok = (frame[f"{prefix}_low"] <= frame.theory) & (frame.theory <= frame[f"{prefix}_high"])
    return f"{int(ok.sum())} of {len(frame)}"


def _max_abs(values):
    return float(np.abs(values).max())


def formatted(frame, formats):
    """A copy with the given columns as strings, e.g. {'ours': '.9g'}, for .md and .csv."""
    out = frame.copy()
    for column, spec in formats.items():
        out[column] = [format(v, spec) for v in frame[column]]
    return out


def readme_text(cfg, frames, wall_s, timings):
    sections = [
        "# Section 3 theory: Figures 2 and 3, and P(match) over (n, a)", "",
        f"Regenerate with `python run.py configs/theory.yaml` ({wall_s:.0f} s of computing "
        f"here; per step: {', '.join(f'{k} {v:g} s' for k, v in timings.items())}). Seed "
        f"{cfg.seed}; resolved settings, machine and versions in the job's folder "
        f"({JOB}/seed-{cfg.seed}/: config.yaml, provenance.json), with the CSV behind every "
        f"curve and point.", "",
        "![Figure 2](figure2_binary.png)", "", figure2_caption(cfg.binary, cfg.ci_level), "",
        "![Figure 3](figure3_scalar.png)", "", figure3_caption(cfg.scalar, cfg.ci_level), "",
        "![P(match) over (n, a)](extra_heatmap.png)", "", heatmap_caption(cfg.binary), "",
        "## Checks", "", f"With {cfg.ci_level:.0%} intervals about {1 - cfg.ci_level:.0%} "
        f"of the points should miss the theory by chance.", "", *agreement(frames), "",
        "## Published vs ours", "", "Figure 2 (theory values):", "",
        markdown_table(figure2_table(frames)), "", QUARTER_NOTE, "",
        "Figure 3 (simulated frequencies):", "",
        markdown_table(figure3_table(frames)), "",
        f"Data: {JOB}/seed-{cfg.seed}/figure2_*.csv, figure3_*.csv and extra_heatmap.csv hold "
        f"every curve and point."]
    return "\n".join(sections) + "\n"


def figure2_table(frames):
    return formatted(frames["figure2_published"],
                     {"published": ".9g", "ours": ".9g", "rel_error": "+.1e"})


def figure3_table(frames):
    return formatted(frames["figure3_published"],
                     {"published": ".3g", "theory": ".3g", "theory_rel_diff": "+.1%",
                      "frequency": ".3g", "sim_rel_diff": "+.1%"})


FRAMES = ("figure2_theory", "figure2_simulation", "figure2_published", "figure3_theory",
          "figure3_simulation", "figure3_published", "extra_heatmap")
JOB = "section3"  # the theory suite's one job: <out>/theory/section3/seed-<seed>/


def run_job(cfg, network, seed, folder, progress=True):
    """Compute and simulate every curve; the run folder gets one CSV per table of FRAMES and
    a metrics line with each step's wall time. Returns the records."""
    with open_run(folder, cfg, network, seed, {"name": "theory", "title": "section 3"}) as run:
        if run.finished:
            return run.records
        run.start("cpu", 0, 1)
        start, timings = time.perf_counter(), {}
        frames = compute_all(cfg, timings)
        for name in FRAMES:
            atomic_write(run.folder / f"{name}.csv", frames[name].to_csv(index=False))
        run.keep([])
        run.add({"timings": timings, "seconds": round(time.perf_counter() - start, 1)})
        if progress:
            print("\n".join(agreement(frames)))
    return run.records


def summary(network, seed, records):
    return f"theory: computed in {records[-1]['seconds']:.1f} s"


def load_job(exp_dir):
    """(TheoryConfig, frames, the metrics record) of the experiment's finished job."""
    runs = [run for run in load_runs(exp_dir) if run.done]
    if not runs:
        return None
    run = runs[0]
    fields = {k: v for k, v in run.config.items() if k != "network"}
    cfg = from_dict(TheoryConfig, fields, f"{exp_dir}/{run.network}/seed-{run.seed}/config.yaml: ")
    folder = Path(exp_dir) / run.network / f"seed-{run.seed}"
    frames = {name: pd.read_csv(folder / f"{name}.csv") for name in FRAMES}
    return cfg, frames, run.records[-1]


def doc_blocks(exp_dir, suite=None):
    """The docs' blocks figure2 and figure3: the published-vs-ours tables of the job."""
    job = load_job(exp_dir)
    if job is None:
        return {}
    _, frames, _ = job
    return {"figure2": markdown_table(figure2_table(frames)),
            "figure3": markdown_table(figure3_table(frames))}


def write_report(exp_dir, suite=None):
    """Write the tables, figures and README.md of ``exp_dir`` from its job's records."""
    exp_dir = Path(exp_dir)
    job = load_job(exp_dir)
    if job is None:
        print(f"report: no finished theory job under {exp_dir} yet; nothing to report")
        return []
    cfg, frames, record = job
    paths = list(write_table(figure2_table(frames), exp_dir / "figure2_published",
                             title="Figure 2: the paper's theory values vs our exact ones",
                             notes=[QUARTER_NOTE]))
    paths += write_table(figure3_table(frames), exp_dir / "figure3_published",
                         title="Figure 3: the paper's frequencies vs our theory and simulation")
    figures = {"figure2_binary": figure2(cfg.binary, cfg.ci_level, frames["figure2_theory"],
                                         frames["figure2_simulation"],
                                         frames["figure2_published"]),
               "figure3_scalar": figure3(cfg.scalar, frames["figure3_theory"],
                                         frames["figure3_simulation"],
                                         frames["figure3_published"]),
               "extra_heatmap": heatmap_figure(frames["extra_heatmap"], cfg.binary)}
    for stem, fig in figures.items():
        save_png(fig, exp_dir / f"{stem}.png")
        paths.append(exp_dir / f"{stem}.png")
    atomic_write(exp_dir / "README.md",
                 readme_text(cfg, frames, record["seconds"], record["timings"]))
    paths.append(exp_dir / "README.md")
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths


def load(raw, path, overrides=(), smoke=False):
    """configs/theory.yaml as a Suite of one job (its TheoryConfig), written to <out>/theory."""
    cfg = theory_config(raw, path, overrides, smoke)
    return Suite("theory", [cfg.seed], {JOB: cfg}, [JOB], Path(path), smoke, task="theory")


TASK = Task("theory", TheoryConfig, run_job, summary, report=write_report,
            doc_blocks=doc_blocks, loader=load)
