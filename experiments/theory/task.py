"""``python run.py configs/theory.yaml``: compute, simulate, plot and write results/theory/.

It writes the figures as PNG, the CSV behind every curve, the published-vs-ours tables,
README.md with the captions and checks, config.yaml and provenance.json; doc_blocks() reads the
published-vs-ours tables back for the docs.
"""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from experiments.core.config import ConfigError, to_dict
from experiments.core.figures import save_png
from experiments.core.records import atomic_write, provenance, write_yaml
from experiments.core.runs import experiment_dir
from experiments.core.suite import Suite
from experiments.core.tables import markdown_table, write_table
from experiments.theory.config import load_theory_config
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
        f"Regenerate with `python run.py configs/theory.yaml` ({wall_s:.0f} s wall time here; "
        f"per step: {', '.join(f'{k} {v:g} s' for k, v in timings.items())}). Seed "
        f"{cfg.seed}; resolved settings in config.yaml, machine and versions in "
        f"provenance.json.", "",
        "![Figure 2](figure2_binary.png)", "", figure2_caption(cfg.binary, cfg.ci_level), "",
        "![Figure 3](figure3_scalar.png)", "", figure3_caption(cfg.scalar, cfg.ci_level), "",
        "![P(match) over (n, a)](extra_heatmap.png)", "", heatmap_caption(cfg.binary), "",
        "## Checks", "", f"With {cfg.ci_level:.0%} intervals about {1 - cfg.ci_level:.0%} "
        f"of the points should miss the theory by chance.", "", *agreement(frames), "",
        "## Published vs ours", "", "Figure 2 (theory values):", "",
        markdown_table(figure2_table(frames)), "", QUARTER_NOTE, "",
        "Figure 3 (simulated frequencies):", "",
        markdown_table(figure3_table(frames)), "",
        "Data: figure2_*.csv, figure3_*.csv and extra_heatmap.csv hold every curve and point."]
    return "\n".join(sections) + "\n"


FIGURE2_FORMATS = {"published": ".9g", "ours": ".9g", "rel_error": "+.1e"}
FIGURE3_FORMATS = {"published": ".3g", "theory": ".3g", "theory_rel_diff": "+.1%",
                   "frequency": ".3g", "sim_rel_diff": "+.1%"}


def figure2_table(frames):
    return formatted(frames["figure2_published"], FIGURE2_FORMATS)


def figure3_table(frames):
    return formatted(frames["figure3_published"], FIGURE3_FORMATS)


def doc_blocks(exp_dir):
    """The docs' blocks figure2 and figure3: the published-vs-ours tables, read back from
    their CSVs (formatted columns as written, the others as numbers)."""
    tables = {"figure2": ("figure2_published.csv", FIGURE2_FORMATS),
              "figure3": ("figure3_published.csv", FIGURE3_FORMATS)}
    paths = {name: (Path(exp_dir) / csv, formats) for name, (csv, formats) in tables.items()}
    return {name: markdown_table(pd.read_csv(path, dtype=dict.fromkeys(formats, str)))
            for name, (path, formats) in paths.items() if path.is_file()}


def write_all(cfg, frames, out, timings, start):
    """Write the CSVs, tables, figures, README, config and provenance under ``out``."""
    for name in ("figure2_theory", "figure2_simulation", "figure3_theory",
                 "figure3_simulation", "extra_heatmap"):
        atomic_write(out / f"{name}.csv", frames[name].to_csv(index=False))
    write_table(figure2_table(frames), out / "figure2_published",
                title="Figure 2: the paper's theory values vs our exact ones",
                notes=[QUARTER_NOTE])
    write_table(figure3_table(frames), out / "figure3_published",
                title="Figure 3: the paper's frequencies vs our theory and simulation")
    save_png(figure2(cfg.binary, cfg.ci_level, frames["figure2_theory"],
                     frames["figure2_simulation"], frames["figure2_published"]),
             out / "figure2_binary.png")
    save_png(figure3(cfg.scalar, frames["figure3_theory"], frames["figure3_simulation"],
                     frames["figure3_published"]), out / "figure3_scalar.png")
    save_png(heatmap_figure(frames["extra_heatmap"], cfg.binary), out / "extra_heatmap.png")
    wall_s = time.time() - start
    atomic_write(out / "README.md", readme_text(cfg, frames, wall_s, timings))
    write_yaml(out / "config.yaml", to_dict(cfg))
    run_stamp = {**provenance(torch.device("cpu")), "wall_time_s": round(wall_s, 1),
                 "timings_s": timings}
    atomic_write(out / "provenance.json", json.dumps(run_stamp, indent=2, default=str) + "\n")
    return wall_s


def load(path, overrides=(), smoke=False):
    """configs/theory.yaml as a Suite of one job (its TheoryConfig), written to <out>/theory."""
    cfg = load_theory_config(path, overrides, smoke)
    return Suite("theory", [cfg.seed], {"theory": cfg}, ["theory"], Path(path), smoke)


def run(suite, out_root, **_launch_options):
    """Compute, simulate, plot and write the experiment folder; return it."""
    start = time.time()
    cfg = suite.jobs["theory"]
    out = experiment_dir(suite, out_root)
    timings = {}
    frames = compute_all(cfg, timings)
    wall_s = write_all(cfg, frames, out, timings, start)
    print(f"theory: wrote {out} in {wall_s:.1f} s")
    print("\n".join(agreement(frames)))
    return out


def describe(suite, out_dir):
    raise ConfigError(f"{suite.source}: --describe lists networks; the theory task has none")
