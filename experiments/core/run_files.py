"""A run folder's files on their way between the driver and a cluster node that has no shared
filesystem (experiments/core/ray_launcher.py): the driver's run folder is the source of truth.

    files = snapshot(folder)           # {relative path: bytes}: every file a job wrote, nested
    sent = Sent(folder)                # on the node: what the driver has already
    changed = sent.changed()           # files written or rewritten since the last call
    write_files(folder, files)         # on the driver: metrics.jsonl first, done last

A job resumed on another node starts from ``snapshot`` of the driver's folder (its last
checkpoint with its records); the node's files come back after each record and at the end.
The lock, error.txt and temporary files (names starting with '.') never travel.

They travel through a ``Transport``: ``ObjectStore`` passes them inside Ray's messages (the
default), ``Storage`` through a folder every node and the driver reach, named by a path (local
disk, NFS) or an fsspec URI (s3://bucket/prefix with s3fs installed, gs:// with gcsfs, ...).
Each batch goes to its own sub-folder, read once and removed, so that no reader ever meets a
file its writer is still rewriting.
"""

import os
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path

from experiments.core.config import ConfigError
from experiments.core.records import atomic_write
from experiments.core.runs import ERROR, LOCK

STAYS = (LOCK, LOCK + ".break", ERROR)  # the driver's own files, never sent either way


def travels(relative):
    """Whether the file at ``relative`` (a path inside a run folder) is sent."""
    return relative.name not in STAYS and not any(p.startswith(".") for p in relative.parts)


def _files(folder):
    """{relative path: os.stat_result} of every file that travels, under ``folder``."""
    folder = Path(folder)
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and travels(relative):
            found[relative.as_posix()] = path.stat()
    return found


def snapshot(folder):
    """{relative path: bytes} of every file of ``folder`` that travels."""
    return {name: (Path(folder) / name).read_bytes() for name in _files(folder)}


class Sent:
    """The files of ``folder`` the other side has: all of them when this starts (the folder was
    just made from its snapshot), then whatever ``changed()`` returned."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.stamps = {name: _stamp(stat) for name, stat in _files(folder).items()}

    def changed(self):
        """{relative path: bytes} of the files written since the last call (or the start)."""
        new = {}
        for name, stat in _files(self.folder).items():
            if self.stamps.get(name) != _stamp(stat):
                new[name] = (self.folder / name).read_bytes()
                self.stamps[name] = _stamp(stat)
        return new


def _stamp(stat):
    return stat.st_size, stat.st_mtime_ns


def write_files(folder, files):
    """Write ``files`` into ``folder`` in an order that a crash between two of them leaves
    resumable: metrics.jsonl first (a checkpoint never runs ahead of its records), ``done``
    last (a folder marked done has everything)."""
    for name in sorted(files, key=lambda n: (n == "done", n != "metrics.jsonl", n)):
        path = Path(folder) / name
        if not travels(Path(name)) or Path(os.path.normpath(path)) != path:
            raise ValueError(f"{name}: not a run folder's file")  # e.g. '../x' or a lock
        atomic_write(path, files[name])


class ObjectStore:
    """Files inside the launcher's own messages (Ray's object store carries them)."""

    def send(self, key, files):
        return files

    def receive(self, key, sent):
        return sent


class Storage:
    """Files through ``uri``: a folder every node and the driver reach (a path: a local disk,
    NFS; or an fsspec URI). fsspec is what pandas, Dask and PyTorch's distributed checkpoints
    read remote files with, and it comes with torch: local paths need nothing more."""

    def __init__(self, uri):
        self.uri = uri

    def _fs(self):
        import fsspec
        try:
            return fsspec.core.url_to_fs(self.uri)
        except (ImportError, ValueError) as e:  # e.g. s3:// without s3fs
            raise ConfigError(f"--storage {self.uri}: {e}") from None

    def send(self, key, files):
        """Write ``files`` into a new batch folder under ``key``; return where."""
        fs, root = self._fs()
        batch = f"{key}/{uuid.uuid4().hex[:12]}"
        for name, data in files.items():
            path = f"{root}/{batch}/{name}"
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.pipe_file(path, data)
        return {"batch": batch, "names": sorted(files)}

    def receive(self, key, sent):
        """The files of a batch ``send`` wrote; the batch is removed."""
        fs, root = self._fs()
        folder = f"{root}/{sent['batch']}"
        files = {name: fs.cat_file(f"{folder}/{name}") for name in sent["names"]}
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
        return files


    @contextmanager
    def marker(self):
        """The URI of a file made in the storage for the block: a node that can read it
        reaches the storage (``reaches``)."""
        fs, root = self._fs()
        name = f".reach-{uuid.uuid4().hex}"
        fs.makedirs(root, exist_ok=True)
        fs.pipe_file(f"{root}/{name}", b"")
        try:
            yield f"{self.uri.rstrip('/')}/{name}"
        finally:
            fs.rm(f"{root}/{name}")


def reaches(uri):
    """Whether this process sees the file at ``uri`` (a path or an fsspec URI)."""
    import fsspec
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        return fs.exists(path)
    except (ImportError, ValueError, OSError):
        return False


MODES = ("auto", "shared", "objects")  # the --storage values that name no storage


def transport(storage):
    """The Transport of the Ray launcher's ``--storage`` value (a path or URI, or a mode)."""
    return ObjectStore() if storage in MODES else Storage(storage)


def absolute(storage):
    """``storage`` with a relative path made absolute (nodes have other working directories)."""
    return storage if storage in MODES or "://" in storage else str(Path(storage).resolve())


def marker(storage):
    """Storage(storage).marker(), or a block yielding None for a mode."""
    return nullcontext() if storage in MODES else Storage(storage).marker()
