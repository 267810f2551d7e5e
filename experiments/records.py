"""Files a run leaves behind: atomic writes, JSON lines, provenance, Markdown/CSV tables."""

import json
import numbers
import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` via a temporary file and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_yaml(path, data):
    atomic_write(path, yaml.safe_dump(data, sort_keys=False))


def read_jsonl(path):
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path, records):
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in records))


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit():
    """'<sha>', or '<sha>-dirty' when tracked code differs from it (results/ aside)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        return (sha + ("-dirty" if dirty.strip() else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device):
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device):
    """Library versions, commit, machine and device: written next to every run's metrics."""
    import numpy
    import torch
    return {"git_commit": git_commit(), "python": sys.version.split()[0],
            "torch": torch.__version__, "numpy": numpy.__version__,
            "platform": platform.platform(), "hostname": socket.gethostname(),
            "device": device_name(device), "command": " ".join(sys.argv)}


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
