"""Write an experiment's report files from its records (the arithmetic is in tables.py,
compare.py and paired.py, the drawing in figures.py and paired.py), and the blocks the docs
quote (doc_blocks)."""

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.figures import save_figure
from experiments.core.runs import EXAMPLES, load_runs, reference_dir
from experiments.core.tables import markdown_table, write_table
from experiments.report import figures
from experiments.report.compare import comparison_frame, comparison_markdown, comparison_notes
from experiments.report.paired import (axes_markdown, axis_frame, claims, paired_frame,
                                       paired_markdown, selection_verdicts, verdicts,
                                       write_paired)
from experiments.report.tables import (epoch_frame, load_published, markdown_frame,
                                       mean_std_cell, noise_curve_frame, provenance_summary,
                                       report_context, results_table, seed_table, table_notes,
                                       table_title)


def build_figures(context):
    """{file stem: (matplotlib Figure, the DataFrame behind it)} for the experiment."""
    curves, epochs = noise_curve_frame(context), epoch_frame(context)
    return {
        "noise_curves": (figures.noise_curves_figure(
            curves, f"{context.subject}: accuracy vs noise ({context.experiment})",
            context.noise_axis), curves),
        "epochs": (figures.epochs_figure(
            epochs, f"{context.subject}: test accuracy and noise score per epoch "
                    f"({context.experiment})"), epochs),
    }


def examples_figure(path):
    """(Figure, frame) of the noisy examples file ``path``, or None when there is none."""
    if not Path(path).is_file():
        return None
    with np.load(path) as data:
        fig = figures.noisy_examples_figure(data["images"], data["levels"], data["row_labels"],
                                            str(data["title"]))
        frame = pd.DataFrame([{"example": label, "test_index": int(index), "level": float(level),
                               "noisy_pixels": int(count)}
                              for label, index in zip(data["row_labels"], data["test_index"])
                              for level, count in zip(data["levels"], data["noisy_pixels"])])
    return fig, frame


def write_comparison(context, exp_dir, published):
    """comparison.md / .csv against the shipped records of the same experiment; [] if none."""
    shipped = reference_dir(context.experiment)
    if shipped.resolve() == Path(exp_dir).resolve():
        return []
    runs = [run for run in load_runs(shipped) if run.records]
    if not runs:
        return []
    reference = report_context(runs, context.experiment, published)
    frame = comparison_frame(context, reference)
    paths = write_table(frame, Path(exp_dir) / "comparison",
                        title=f"{context.experiment}: this run, the shipped reference records "
                              f"and the paper", notes=comparison_notes(context, reference),
                        markdown=comparison_markdown(frame))
    print(markdown_table(comparison_markdown(frame)))
    return list(paths)


def write_report(exp_dir, suite=None):
    """Write table.md/.csv, the figures and the comparison of ``exp_dir``, and, given the
    experiment's ``suite``, its paired comparisons and curves; return the paths."""
    exp_dir = Path(exp_dir)
    runs = load_runs(exp_dir)
    if not any(r.records for r in runs):
        print(f"report: no finished epoch under {exp_dir} yet; nothing to report")
        return []
    published = load_published()
    context = report_context(runs, exp_dir.name, published)
    table = results_table(context)
    paths = list(write_table(table, exp_dir / "table", title=table_title(context),
                             notes=table_notes(table, context),
                             markdown=markdown_frame(table, context)))
    for stem, (fig, frame) in build_figures(context).items():
        paths += save_figure(fig, frame, exp_dir / stem)
    examples = examples_figure(exp_dir / EXAMPLES)
    if examples is not None:
        paths += save_figure(*examples, exp_dir / "noisy_examples")
    paths += write_paired(context, suite, exp_dir)
    paths += write_comparison(context, exp_dir, published)
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths


def doc_blocks(exp_dir, suite=None):
    """The markdown blocks that README.md and docs/*.md quote, from the records alone:

        table     per network, our best-epoch scores (mean ± std, (delta σ)) beside the paper's
        scores    a caption, then best- and last-epoch scores and the accuracy at the highest
                  noise level (last epoch)
        seeds     the best-epoch noise score of every seed, a column per seed
        run_time  one line: runs, their summed wall time and the devices they ran on
        paired    (given the suite's compare:) the paired comparisons, best epoch, as a table
        claims    the same as one sentence each (n, intervals, tests), best epoch
        claims_last, claims_valid   the same at the last epoch, and the held-out selection
        selection (with held-out images) which conclusions change from the best epoch to the
                  valid one: each comparison's interval and adjusted p under both
        axes      (given the suite's axes:) each swept value's scores and its paired difference
                  from the compare: against network
    """
    runs = load_runs(exp_dir)
    if not any(r.records for r in runs):
        return {}
    context = report_context(runs, Path(exp_dir).name, load_published())
    shown = markdown_frame(results_table(context), context)
    paper_test, paper_noise = [c for c in shown.columns if "(paper" in c]
    return {"table": markdown_table(shown[["network", "test % (best epoch)", paper_test,
                                           "noise score (best epoch)", paper_noise]]),
            "scores": (f"*{table_title(context)}*\n\n"
                       + markdown_table(scores_frame(shown, context))),
            "seeds": markdown_table(seeds_frame(context)),
            "run_time": run_time_line(runs), **paired_blocks(context, suite)}


def paired_blocks(context, suite):
    """The blocks of the suite's paired comparisons (none without a suite or comparisons)."""
    frame = paired_frame(context, [] if suite is None else suite.pairs())
    if frame.empty:
        return {}
    source = f"records: `results/reference/{context.experiment}/`"
    blocks = {"paired": markdown_table(paired_markdown(frame, "best")),
              "claims": "\n".join(claims(frame, "best", source)),
              "verdicts": verdicts(frame, "best", source)}
    curves = axis_frame(context, suite.axes)
    if not curves.empty:
        blocks["axes"] = markdown_table(axes_markdown(curves, frame, suite.compare.against))
    for selection in context.selections:
        if selection != "best":
            blocks[f"claims_{selection}"] = "\n".join(claims(frame, selection, source))
    if "valid" in context.selections:
        blocks["selection"] = selection_verdicts(frame, source)
    return blocks


def scores_frame(shown, context):
    """Best and last epochs' scores, and the accuracy at the highest noise level, last epoch."""
    curves = noise_curve_frame(context)
    top = curves[(curves.selection == "last") & (curves.level == curves.level.max())]
    cells = {row.label: mean_std_cell(row.mean, row.std, 1) for row in top.itertuples()}
    frame = shown[["network", "seeds", "test % (best epoch)", "noise score (best epoch)",
                   "test % (last epoch)", "noise score (last epoch)"]].copy()
    frame[f"accuracy % at noise {curves.level.max():g} (last epoch)"] = frame.network.map(cells)
    return frame


def seeds_frame(context):
    """A row per network, a column per seed: the noise score of the seed's best epoch."""
    seeds = seed_table(context)
    seeds["network"] = seeds.network.map(context.labels)
    wide = seeds.pivot_table(index="network", columns="seed", values="noise_best", sort=False)
    wide.columns = [f"seed {seed}" for seed in wide.columns]
    return wide.map(lambda v: "-" if np.isnan(v) else f"{v:,.0f}").reset_index()


def run_time_line(runs):
    """'N runs, S s (M min) of wall time in all, on DEVICE' from the runs' provenance; sessions
    that ended without writing their wall time (interrupted) are counted apart."""
    sessions = [s for r in runs for s in r.sessions]
    seconds = sum(s["wall_seconds"] for s in sessions if s.get("wall_seconds") is not None)
    unrecorded = sum(s.get("wall_seconds") is None for s in sessions)
    gap = f" ({unrecorded} interrupted session(s) not counted)" if unrecorded else ""
    return (f"{len(runs)} run{'s' if len(runs) > 1 else ''}, {seconds:,.0f} s "
            f"({seconds / 60:.1f} min) of wall time in all{gap}, on "
            f"{provenance_summary(runs)['device']}.")
