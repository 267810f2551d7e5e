"""Tables as files: each written as CSV (the numbers) and GitHub Markdown (for reading)."""

import numbers
from pathlib import Path

from experiments.core.records import atomic_write


def write_table(rows, stem, title=None, notes=(), markdown=None):
    """Write ``rows`` (list of dicts or DataFrame) as <stem>.csv and <stem>.md; return both paths.

    ``markdown``, when given, is the frame shown in the .md instead (e.g. formatted
    'mean ± std' cells), while the CSV keeps the plain numbers.
    """
    import pandas as pd
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    stem = Path(stem)
    atomic_write(stem.with_suffix(".csv"), frame.to_csv(index=False))
    lines = [f"# {title}", ""] if title else []
    lines.append(markdown_table(frame if markdown is None else markdown))
    lines += [""] + [f"{n}" for n in notes] if notes else []
    atomic_write(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    return stem.with_suffix(".md"), stem.with_suffix(".csv")


def markdown_table(frame):
    """A GitHub Markdown table of a DataFrame (no extra dependency); NaN shows as empty."""
    import numpy
    def cell(v):
        if isinstance(v, (bool, numpy.bool_)) or v is None:
            return str(v)
        if isinstance(v, numbers.Integral):
            return f"{v:,}"
        if isinstance(v, numbers.Real):
            return "" if v != v else (f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}")
        return str(v).replace("|", "\\|")
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule] + body)
