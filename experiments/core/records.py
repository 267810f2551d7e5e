"""Files a run leaves behind: atomic writes, JSON lines, YAML, provenance."""

import contextvars
import functools
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


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


def save_torch(path, obj):
    """torch.save ``obj`` to ``path`` atomically (a crash never leaves half a checkpoint)."""
    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


# libyaml's parser when PyYAML was built with it (the wheels are): the same values as
# yaml.safe_load, about 8x faster, which matters to code that reads many run folders.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text):
    """``yaml.safe_load`` of ``text`` (a str), with the C parser when available."""
    return yaml.load(text, Loader=_YAML_LOADER)


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


@functools.lru_cache(maxsize=None)
def git_commit():
    """'<sha>', or '<sha>-dirty' when tracked code differs from it (results/ aside): read once
    per process, when it first asks, so that a long-running driver records the code it loaded
    rather than commits made while it runs."""
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


def cpu_kind(text=None):
    """This machine's CPU model (with its family and model numbers where /proc/cpuinfo has
    them: a VM's "AMD EPYC" can be a Zen 3, 4 or 5, whose kernels' speeds differ), its widest
    vector extension (AVX-512 or AVX2: figures from one do not compare with the other's) and
    core count, for benchmark records. ``text``: /proc/cpuinfo's (default: read it)."""
    if text is None:
        info = Path("/proc/cpuinfo")
        text = info.read_text() if info.is_file() else ""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if fields.get("cpu family") and fields.get("model"):
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    vectors = "AVX-512" if " avx512f" in text else "AVX2" if " avx2" in text else "no AVX2"
    return f"{name}, {vectors}, {os.cpu_count()} cores"


def versions():
    """The library versions a job's numbers depend on (a cluster node must match the driver's)."""
    import numpy
    import torch
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": numpy.__version__}


def origin():
    """What started this process's jobs: its command line and the commit of its code."""
    return {"command": " ".join(sys.argv), "git_commit": git_commit()}


_LAUNCHED_BY = contextvars.ContextVar("launched_by", default=None)


@contextmanager
def launched_by(driver_origin):
    """Within the block, provenance records ``driver_origin`` (``origin()`` of the driver that
    shipped this job to a cluster node) instead of this process's command and commit: a Ray
    worker's command line is Ray's, and code shipped without .git has no commit to read."""
    token = _LAUNCHED_BY.set(driver_origin)
    try:
        yield
    finally:
        _LAUNCHED_BY.reset(token)


def provenance(device):
    """Library versions, commit, machine and device: written next to every run's metrics."""
    started = _LAUNCHED_BY.get() or origin()
    return {"git_commit": started["git_commit"], **versions(),
            "platform": platform.platform(), "hostname": socket.gethostname(),
            "device": device_name(device), "command": started["command"]}
