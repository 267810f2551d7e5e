"""The corruptions report, from the jobs' records alone (metrics.jsonl).

    corruptions.md, .csv        per network: clean accuracy, the mean accuracy over each
                                corruption's severities, and the mean over all corruptions
                                (the CSV: per network, corruption and severity, with 95%
                                Clopper-Pearson intervals over the images)
    corruption_curves.png, .csv accuracy against severity, a panel per corruption (the paper's
                                pixel noise among them), a line per network

With several seeds the images of all seeds are pooled; doc_blocks() gives the docs the summary
table. Imports no model and no dataset.
"""

import math
from pathlib import Path

import pandas as pd

from experiments.core.figures import new_figure, save_figure, series_colors
from experiments.core.intervals import clopper_pearson
from experiments.core.runs import load_runs
from experiments.core.tables import markdown_table, write_table

CLEAN = "clean"


def load_frame(exp_dir):
    """Per (network, corruption, severity): correct, images, accuracy, interval, and the
    corruption's title, parameter and amount; severity 0 of each corruption is the clean run."""
    rows = []
    for run in load_runs(exp_dir):
        clean = [r for r in run.records if r["corruption"] == CLEAN]
        if not clean:
            continue
        tag = {"network": run.network, "label": clean[0]["label"], "seed": run.seed}
        for r in run.records:
            amounts = r.get("amounts", [None] * len(r["severity"]))
            rows += [{**tag, "corruption": r["corruption"], "title": r.get("title", CLEAN),
                      "parameter": r.get("parameter", ""), "severity": s, "amount": a,
                      "correct": c, "images": r["images"]}
                     for s, a, c in zip(r["severity"], amounts, r["correct"])]
    if not rows:
        return None
    keys = ["network", "label", "corruption", "title", "parameter", "severity"]
    frame = pd.DataFrame(rows).groupby(keys, sort=False, dropna=False).agg(
        amount=("amount", "first"), correct=("correct", "sum"), images=("images", "sum"),
        seeds=("seed", "nunique")).reset_index()
    lo, hi = clopper_pearson(frame.correct, frame.images)
    return frame.assign(accuracy=frame.correct / frame.images, lo=lo, hi=hi)


def summary_markdown(frame):
    """A row per network: clean and each corruption's mean accuracy over its severities (%)."""
    corrupt = frame[frame.corruption != CLEAN]
    means = corrupt.pivot_table(index="label", columns="title", values="accuracy",
                                aggfunc="mean", sort=False)
    table = 100 * means[list(dict.fromkeys(corrupt.title))]
    table.insert(0, "clean", 100 * frame[frame.corruption == CLEAN].set_index("label").accuracy)
    table["mean over corruptions"] = table.iloc[:, 1:].mean(axis=1)
    return table.map(lambda v: f"{v:.1f}").reset_index().rename(columns={"label": "network"})


def curves_figure(frame):
    """A panel per corruption: accuracy (%) against severity, 0 being the clean images."""
    corruptions = list(dict.fromkeys(frame.corruption[frame.corruption != CLEAN]))
    cols = 4
    fig = new_figure(4 * cols, 3.4 * math.ceil(len(corruptions) / cols))
    axes = fig.subplots(math.ceil(len(corruptions) / cols), cols, squeeze=False).flatten()
    colors = series_colors(dict.fromkeys(frame.network))
    clean = frame[frame.corruption == CLEAN].set_index("network")
    curves = []
    for ax, name in zip(axes, corruptions):
        part = frame[frame.corruption == name]
        for network, g in part.groupby("network", sort=False):
            curve = pd.concat([clean.loc[[network]].reset_index().assign(corruption=name), g])
            ax.plot(curve.severity, 100 * curve.accuracy, marker="o", markersize=3,
                    color=colors[network], label=g.label.iloc[0])
            curves.append(curve)
        first = part.drop_duplicates("severity").sort_values("severity")
        ax.set_xticks([0, *first.severity], ["clean", *(f"{s}\n{a:g}" for s, a in
                                                        zip(first.severity, first.amount))])
        ax.set(title=first.title.iloc[0], xlabel=f"severity ({first.parameter.iloc[0]})",
               ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(corruptions):]:
        ax.axis("off")
    spare = axes[-1] if len(corruptions) < len(axes) else axes[0]  # a free panel if there is one
    spare.legend(*axes[0].get_legend_handles_labels(), fontsize="small", loc="center")
    fig.suptitle("MNIST test accuracy under common corruptions and the paper's pixel noise")
    return fig, pd.concat(curves)[["corruption", "network", "label", "severity", "amount",
                                   "correct", "images", "accuracy", "lo", "hi"]]


def write_report(exp_dir, suite=None):
    """Write the table and figure of a corruptions experiment; return the paths."""
    exp_dir = Path(exp_dir)
    frame = load_frame(exp_dir)
    if frame is None:
        print(f"report: no evaluated network under {exp_dir} yet")
        return []
    images = int(frame.images.iloc[0] / frame.seeds.iloc[0])
    notes = [f"Accuracy (%) on {images:,} test images per seed, the mean over each corruption's "
             f"severities; per severity, with 95% Clopper-Pearson intervals, in the CSV."]
    paths = list(write_table(frame, exp_dir / "corruptions", notes=notes,
                             markdown=summary_markdown(frame),
                             title=f"Accuracy under common corruptions ({exp_dir.name})"))
    paths += save_figure(*curves_figure(frame), exp_dir / "corruption_curves")
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths


def doc_blocks(exp_dir, suite=None):
    """The docs' block ``corruptions``: the summary table of corruptions.md, from the records."""
    frame = load_frame(exp_dir)
    return {} if frame is None else {"corruptions": markdown_table(summary_markdown(frame))}
