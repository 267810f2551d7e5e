"""Write an experiment's report files from its records (the arithmetic is in tables.py,
compare.py and paired.py, the drawing in figures.py and paired.py)."""

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.figures import save_figure
from experiments.core.runs import EXAMPLES, load_runs, reference_dir
from experiments.core.tables import markdown_table, write_table
from experiments.report import figures
from experiments.report.compare import comparison_frame, comparison_markdown, comparison_notes
from experiments.report.paired import write_paired
from experiments.report.tables import (epoch_frame, load_published, markdown_frame,
                                       noise_curve_frame, report_context, results_table,
                                       table_notes, table_title)


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
