"""The report's figures, drawn from the frames experiments/report/tables.py computes (no
arithmetic here)."""

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from experiments.core.figures import new_figure, series_colors

SELECTION_TITLES = {"best": "best epoch per seed (paper's selection, on the test set)",
                    "last": "last epoch per seed (no selection)"}
PAPER_POINTS = "paper Fig. 5B (seed 42, last epoch)"


def noise_curves_figure(frame, title, xlabel):
    """Accuracy vs noise level, one panel per selection: mean line, +-std band, paper points.

    ``frame``: report.noise_curve_frame (network, label, selection, level, mean, std, seeds,
    paper_fig5b).
    """
    selections = list(dict.fromkeys(frame.selection))
    fig = new_figure(6.0 * len(selections), 5.0)
    axes = fig.subplots(1, len(selections), sharey=True, squeeze=False)[0]
    colors = series_colors(dict.fromkeys(frame.network))
    for ax, selection in zip(axes, selections):
        _draw_noise_panel(ax, frame[frame.selection == selection], colors)
        ax.set(title=SELECTION_TITLES.get(selection, selection), xlabel=xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    if frame.paper_fig5b.notna().any():
        handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none"))
        labels.append(PAPER_POINTS)
    axes[0].legend(handles, labels, fontsize="small", loc="lower left")
    fig.suptitle(title)
    return fig


def _draw_noise_panel(ax, frame, colors):
    for network, curve in frame.groupby("network", sort=False):
        x, color = 100 * curve.level, colors[network]
        seeds = int(curve.seeds.max())
        ax.plot(x, curve["mean"], marker="o", markersize=3, color=color,
                label=f"{curve.label.iloc[0]} (n={seeds})")
        ax.fill_between(x, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                        color=color, alpha=0.15, linewidth=0)
        if curve.paper_fig5b.notna().any():
            ax.plot(x, curve.paper_fig5b, color=color, marker="x", linestyle="none")


def epochs_figure(frame, title):
    """Per network (rows): clean test accuracy and noise score vs epoch (columns); thin
    lines per seed, thick black the mean over seeds. ``frame``: report.epoch_frame."""
    networks = list(dict.fromkeys(frame.network))
    fig = new_figure(11.0, 2.3 * len(networks) + 0.8)
    axes = fig.subplots(len(networks), 2, sharex=True, squeeze=False)
    seeds = sorted({s for s in frame.seed if s != "mean"})
    colors = {s: f"C{i % 10}" for i, s in enumerate(seeds)}
    for row, network in zip(axes, networks):
        curves = frame[frame.network == network]
        for ax, column, ylabel in zip(row, ("test_accuracy", "noise_score"),
                                      ("test accuracy (%)", "noise score (correct answers)")):
            _draw_epoch_panel(ax, curves, column, colors)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{curves.label.iloc[0]}: {ylabel.split(' (')[0]}", fontsize="medium")
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch (0 = first)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][1].legend(handles=_epoch_legend(frame, colors), fontsize="small",
                      loc="lower right", ncol=2)
    fig.suptitle(title)
    return fig


def _draw_epoch_panel(ax, curves, column, colors):
    for seed, curve in curves[curves.seed != "mean"].groupby("seed", sort=False):
        ax.plot(curve.epoch, curve[column], color=colors[seed], linewidth=1, alpha=0.7,
                linestyle="-" if curve.done.all() else "--")
    mean = curves[curves.seed == "mean"]
    ax.plot(mean.epoch, mean[column], color="black", linewidth=2.2, marker="o", markersize=3)


def _epoch_legend(frame, colors):
    """Seeds by colour, the mean, and the dashed style of unfinished runs (when any)."""
    handles = [Line2D([], [], color=c, label=f"seed {s}") for s, c in colors.items()]
    handles.append(Line2D([], [], color="black", linewidth=2.2, marker="o", markersize=3,
                          label="mean over seeds"))
    if not frame[frame.seed != "mean"].done.all():
        handles.append(Line2D([], [], color="0.4", linestyle="--", label="unfinished run"))
    return handles


def noisy_examples_figure(images, levels, row_labels, title):
    """Rows = examples, columns = noise levels; ``images`` (rows, levels, H, W) uint8 pixels.

    Drawn as one mosaic image with white gaps between the tiles: one axes instead of one per
    tile, which made the figure 10x60 axes and the slowest part of a report."""
    rows, cols, h, w = images.shape
    gap = max(1, h // 14)
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 255, dtype=np.uint8)
    for i in range(rows):
        for j in range(cols):
            mosaic[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = images[i, j]
    fig = new_figure(1.3 * cols + 0.6, 1.3 * rows + 0.6)
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([j * (w + gap) + (w - 1) / 2 for j in range(cols)],
                  [f"{level:.0%} noise" for level in levels])
    ax.set_yticks([i * (h + gap) + (h - 1) / 2 for i in range(rows)], list(row_labels))
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title)
    return fig
