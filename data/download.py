"""Resumable, checksummed downloads and safe tar extraction.

``download``: bytes go to ``<file>.part``; an interrupted download resumes from the bytes
already there with an HTTP ``Range`` request (a server that ignores it restarts from zero). The
finished file's SHA-256 must equal the one recorded in the code; a mismatch deletes the bytes
and raises DataError. The verified digest is written to ``<file>.sha256``.

``one_process_at_a_time``: an exclusive file lock around a fetch, so that parallel jobs (or
the jobs of one cluster node) download or generate a dataset once and the others wait for it.

``safe_extract``: every member is checked before it is written: absolute names, ``..``
components, links whose target leaves the destination and special files (devices, FIFOs) are
rejected. Extraction goes to ``<dest>.partial`` and is renamed at the end, so ``dest`` only
ever holds a complete extraction.
"""

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from data import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

BLOCK = 1 << 20
RETRIES = 5


class DownloadError(DataError):
    """A download that failed for want of the network: a later try may succeed (launchers
    that retry transient errors retry it), unlike a corrupt file or a missing one."""


@contextlib.contextmanager
def one_process_at_a_time(lock):
    """Hold an exclusive lock on the file ``lock`` (POSIX; no lock where fcntl is missing)."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, path, sha256, progress=True, timeout=60.0):
    """Fetch ``url`` to ``path`` (resuming a ``.part`` file), verify its SHA-256; return path."""
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        _fetch_with_retries(url, part, progress, timeout)
        os.replace(part, path)
    got = sha256_of(path)
    if got != sha256:
        path.unlink()
        raise DataError(f"{path}: checksum mismatch (sha256 {got}, expected {sha256}); the "
                        f"file was deleted, rerun to download it again")
    path.with_name(path.name + ".sha256").write_text(f"{got}  {path.name}\n")
    return path


def _fetch_with_retries(url, part, progress, timeout):
    """Call ``_fetch`` until it completes; network errors retry (resuming), HTTP 4xx do not."""
    for attempt in range(RETRIES):
        try:
            return _fetch(url, part, progress, timeout)
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500:
                raise DataError(f"{url}: HTTP {e.code} {e.reason}") from e
            error = e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            error = e
        if attempt == RETRIES - 1:
            raise DownloadError(f"{url}: download failed after {RETRIES} attempts ({error}); "
                            f"rerun to resume from {part}") from error
        time.sleep(2 ** attempt)


def _fetch(url, part, progress, timeout):
    """Append the rest of ``url`` to ``part``; raise OSError when the transfer ends early."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416:  # 416: nothing left to fetch, ``part`` is complete
            raise
        return
    with response:
        if response.status != 206:  # the server ignored the Range header: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        _copy(response, part, have, total, progress)
    if total is not None and part.stat().st_size < total:
        raise OSError(f"connection closed at {part.stat().st_size} of {total} bytes")


def _copy(response, part, have, total, progress):
    """Write the response body to ``part``, after its first ``have`` bytes."""
    with open(part, "ab" if have else "wb") as f, \
            tqdm(total=total, initial=have, unit="B", unit_scale=True, disable=not progress,
                 desc=f"download {part.name[:-5]}") as bar:
        for block in iter(lambda: response.read(BLOCK), b""):
            f.write(block)
            bar.update(len(block))


def check_member(member, dest):
    """Raise DataError unless ``member`` stays inside ``dest`` (an absolute, resolved path)."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise DataError(f"unsafe archive member {member.name!r}: absolute path or '..'")
    if not _inside(dest / name, dest):
        raise DataError(f"unsafe archive member {member.name!r}: path leaves {dest}")
    if member.issym():
        target = (dest / name).parent / member.linkname
    elif member.islnk():
        target = dest / member.linkname
    elif member.isfile() or member.isdir():
        return
    else:
        raise DataError(f"unsafe archive member {member.name!r}: not a file, folder or link")
    if os.path.isabs(member.linkname) or not _inside(target, dest):
        raise DataError(f"unsafe archive member {member.name!r}: link to {member.linkname!r} "
                        f"is absolute or leaves the target folder")


def _inside(path, root):
    """True when ``path`` (following links already on disk) resolves inside ``root``."""
    resolved = Path(os.path.realpath(path))
    return resolved == root or root in resolved.parents


def safe_extract(archive, dest, progress=True):
    """Extract the tar archive ``archive`` into ``dest`` safely (see module doc); return dest."""
    dest = Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _extract_members(archive, Path(os.path.realpath(partial)), progress)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, dest)
    return dest


def _extract_members(archive, root, progress):
    """Check, then extract, each member of ``archive`` into ``root`` in archive order."""
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
                tqdm(total=os.path.getsize(archive), unit="B", unit_scale=True,
                     disable=not progress, desc=f"extract {Path(archive).name}") as bar:
            for member in tar:
                check_member(member, root)
                tar.extract(member, root, **extra)
                bar.update(raw.tell() - bar.n)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract ({e}); delete it and rerun") from e
