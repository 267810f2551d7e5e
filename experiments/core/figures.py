"""Figures as files: bare matplotlib Figures on the Agg canvas (no pyplot state), so they render
the same in scripts, tests and notebooks, saved as PNG with the CSV of the data behind them."""

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.core.records import atomic_write


def new_figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def series_colors(names):
    """A fixed colour per name (network, corruption, ...), in the order given."""
    palette = [f"C{i}" for i in range(10)]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def save_png(fig, path, dpi=110):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write(path, buffer.getvalue())


def save_figure(fig, frame, stem):
    """Write <stem>.png and <stem>.csv (the data behind it); return both paths."""
    stem = Path(stem)
    save_png(fig, stem.with_suffix(".png"))
    atomic_write(stem.with_suffix(".csv"), frame.to_csv(index=False))
    return [stem.with_suffix(".png"), stem.with_suffix(".csv")]
