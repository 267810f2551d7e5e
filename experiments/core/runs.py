"""Sweeps as data: one folder per (network, seed), a ``done`` marker, resumable.

    <out>/<experiment>/<network>/seed-<seed>/   one run
        config.yaml      the resolved job config with network and seed (the run's identity)
        provenance.json  one entry per session: versions, git commit, device, wall time
        dataset.json     what the data is (title, noise axis), for reports that read no data
        metrics.jsonl    one JSON line per finished step of the job (an epoch, an attack)
        done             written last: the run is complete
        lock             while a process runs the job: its host and pid (see ``run_lock``)
        error.txt        after a failed try: the traceback, host and attempt (removed when done)
    <out>/<experiment>/noisy_examples.npz       a few noisy test inputs (written by the task)
    <out>/<experiment>/...                      the report, rebuilt from the records

A user's runs go to ``results/`` (git-ignored); the records that README.md and docs/ quote are
shipped in ``results/reference/``, where no run writes.
"""

import functools
import json
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


from experiments.core.config import ConfigError, to_dict
from experiments.core.records import (REPO, atomic_write, load_yaml, now, provenance,
                                      read_jsonl, write_yaml)

REFERENCE = REPO / "results" / "reference"
EXAMPLES = "noisy_examples.npz"


def experiment_dir(suite, out_root):
    return Path(out_root) / ("smoke" if suite.smoke else "") / suite.experiment


def reference_dir(experiment):
    """The shipped records of ``experiment`` (may not exist)."""
    return REFERENCE / experiment


def refuse_reference(out_root):
    """Stop before any work if ``out_root`` lies inside the shipped reference records."""
    out = Path(out_root).resolve()
    if out == REFERENCE or REFERENCE in out.parents:
        raise ConfigError(f"--out {out_root}: holds the shipped reference records, which runs "
                          f"never write; use another folder (default: results)")


@dataclass(frozen=True)
class Job:
    """One (network, seed) of a suite: everything a launcher passes to the job function."""
    name: str
    seed: int
    folder: Path
    config: object  # the task's resolved job config


def job_list(suite, out_root):
    """Every Job of ``suite``, seed by seed, so a partial suite covers every network."""
    root = experiment_dir(suite, out_root)
    return [Job(name, seed, root / name / f"seed-{seed}", suite.jobs[name])
            for seed in suite.seeds for name in suite.run]


def resolved_config(job_config, network, seed):
    return {"network": network, "seed": seed, **to_dict(job_config)}


def prepare(suite, out_root, force=False):
    """Claim every job's folder before any work; with ``force`` wipe the ones we will rerun.

    Returns the jobs that are not done yet.
    """
    refuse_reference(out_root)
    jobs = job_list(suite, out_root)
    for job in jobs:
        if force and job.folder.exists():
            shutil.rmtree(job.folder)
        claim_dir(job.folder, resolved_config(job.config, job.name, job.seed))
    return [job for job in jobs if not is_done(job.folder)]


def claim_dir(folder, resolved):
    """Create ``folder`` for this config; refuse a folder that holds another config's run.

    Keys that the code gained after the run started (new options, whose defaults keep the old
    behaviour) are not a difference: they are added to the saved config.
    """
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        write_yaml(path, resolved)
        return
    existing = load_yaml(path.read_text())
    changed = config_differences(existing, resolved)
    if changed:
        raise ConfigError(f"{folder}: holds a run of a different config (differs in "
                          f"{', '.join(changed[:3])}); use --force to overwrite it")
    if existing != resolved:
        write_yaml(path, resolved)


def config_differences(existing, resolved, prefix=""):
    """Dotted keys whose values differ, ignoring keys present only in ``resolved`` (also in
    the mappings of lists of the same length, e.g. a new option of every conv layer)."""
    if (isinstance(existing, list) and isinstance(resolved, list)
            and len(existing) == len(resolved)):
        return [key for i, (a, b) in enumerate(zip(existing, resolved))
                for key in config_differences(a, b, f"{prefix.rstrip('.')}[{i}].")]
    if not (isinstance(existing, dict) and isinstance(resolved, dict)):
        return [] if existing == resolved else [prefix.rstrip(".") or "(whole config)"]
    changed = []
    for key, value in existing.items():
        if key not in resolved:
            changed.append(prefix + str(key))
        else:
            changed += config_differences(value, resolved[key], f"{prefix}{key}.")
    return changed


def is_done(folder):
    return (Path(folder) / "done").is_file()


def reopen(folder):
    """Make a done run resumable again: its records stay, ``done`` goes."""
    (Path(folder) / "done").unlink(missing_ok=True)


def mark_done(folder, steps):
    atomic_write(Path(folder) / "done", json.dumps({"finished": now(), "steps": steps}) + "\n")


def open_session(folder, device, first, total, **extra):
    """Append a session entry (steps ``first``..``total``) to provenance.json."""
    path = Path(folder) / "provenance.json"
    sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    sessions.append({"started": now(), "finished": None, "wall_seconds": None,
                     "epochs": [first, total], **provenance(device), **extra})
    atomic_write(path, json.dumps({"sessions": sessions}, indent=2) + "\n")


def close_session(folder, wall_seconds):
    """Stamp the last session of provenance.json as finished after ``wall_seconds``."""
    path = Path(folder) / "provenance.json"
    sessions = json.loads(path.read_text())["sessions"]
    sessions[-1].update(finished=now(), wall_seconds=round(wall_seconds, 1))
    atomic_write(path, json.dumps({"sessions": sessions}, indent=2) + "\n")


# ---------------------------------------------------------------- one process per run folder

LOCK = "lock"
ERROR = "error.txt"  # a failed try's traceback, host and attempt (experiments/core/drive.py)
HEARTBEAT_SECONDS = 10  # a holder touches its lock this often
STALE_SECONDS = 120  # untouched this long: its holder is gone (well beyond NFS's attribute cache)
POLL_SECONDS = 0.25


class RunLocked(Exception):
    """Another live process holds the run folder's lock: the job is running there."""


class NotShared(Exception):
    """A folder the driver made is not visible where the job runs: not a shared filesystem."""


def check_visible(folder):
    """Stop a job whose run folder (claimed by the driver, so it has a config.yaml) is not here."""
    folder = Path(folder)
    if not (folder / "config.yaml").is_file() or not os.access(folder, os.W_OK):
        raise NotShared(f"{folder.resolve()}: run folder not found or not writable on host "
                        f"{socket.gethostname()}: run folders must be on a filesystem that "
                        f"every node shares (the same path everywhere)")


@contextmanager
def run_lock(folder, wait=0.0, beat=HEARTBEAT_SECONDS, stale_after=STALE_SECONDS):
    """Hold ``folder``'s lock for the block, so that one process at a time runs its job.

    The lock is ``<folder>/lock``, created with O_CREAT|O_EXCL (atomic, NFS included) and
    naming its holder: host, pid and the space its pid means something in (``pid_space``);
    a thread touches it every ``beat`` seconds. A lock is stale, and taken over, when its
    holder is in this process's pid space and its pid is gone, or when it has not been touched
    for ``stale_after`` seconds (its node was lost). A live holder is waited for up to ``wait``
    seconds; then RunLocked.
    """
    path = Path(folder) / LOCK
    fd = _acquire(path, wait, stale_after)
    stop = threading.Event()
    heart = threading.Thread(target=_heartbeat, args=(fd, stop, beat), daemon=True)
    heart.start()
    try:
        yield
    finally:
        stop.set()
        heart.join()
        _release(path, fd)


def lock_holder(path):
    """What a lock file says ({} when it is gone or its holder is still writing it)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _acquire(path, wait, stale_after):
    deadline = time.monotonic() + wait
    while True:
        fd = _create(path)
        if fd is None and _remove_if_stale(path, stale_after):
            fd = _create(path)
        if fd is not None:
            return fd
        if time.monotonic() >= deadline:
            holder = lock_holder(path)
            raise RunLocked(f"{path.parent}: running elsewhere (host {holder.get('host')}, "
                            f"pid {holder.get('pid')}, since {holder.get('since')})")
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _create(path):
    """An open descriptor of a new lock at ``path`` naming this process; None if one exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "space": pid_space(),
              "since": now()}
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)
    return fd


def _remove_if_stale(path, stale_after):
    """Remove the lock at ``path`` if it is stale; True if removed.

    Deciding and removing happen while holding ``<lock>.break`` (itself a lock, held for
    milliseconds), so that two processes that both saw a stale lock cannot remove the fresh
    lock one of them has just made.
    """
    breaker = path.with_name(path.name + ".break")
    fd = _create(breaker)
    if fd is None:
        if _is_stale(breaker, stale_after):
            breaker.unlink(missing_ok=True)
        return False
    try:
        stale = _is_stale(path, stale_after)
        if stale:
            path.unlink(missing_ok=True)
        return stale
    finally:
        _release(breaker, fd)


def _is_stale(path, stale_after):
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    holder = lock_holder(path)
    here = holder.get("host") == socket.gethostname() and holder.get("space") == pid_space()
    return age > stale_after or (here and not _pid_alive(holder.get("pid")))


@functools.lru_cache(maxsize=None)
def pid_space():
    """'<boot id>/<pid namespace>': where this process's pid names this process. Two
    containers (or PID namespaces) may share a hostname and reuse each other's pids, and a
    rebooted host reuses them all, so a pid is only checked against its own boot and namespace
    (elsewhere only the heartbeat tells whether its holder lives)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:  # no /proc (macOS, Windows): the host, as before
        return "host"


def _pid_alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return True  # unknown: only the heartbeat can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _heartbeat(fd, stop, beat):
    """Touch the lock through its own descriptor: a lock taken over as stale is never touched."""
    while not stop.wait(beat):
        os.utime(fd)


def _release(path, fd):
    """Close the lock and remove it if the file at ``path`` is still this one."""
    try:
        ours = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        ours = False
    if ours:
        path.unlink()
    os.close(fd)


# ---------------------------------------------------------------- reading runs back

@dataclass
class Run:
    """One run folder as reports see it: its resolved config, records and sessions."""
    network: str
    seed: int
    config: dict
    records: list
    sessions: list
    dataset: dict
    done: bool


def read_run(folder):
    folder = Path(folder)
    prov, data = folder / "provenance.json", folder / "dataset.json"
    return Run(network=folder.parent.name, seed=int(folder.name.split("-", 1)[1]),
               config=load_yaml((folder / "config.yaml").read_text()),
               records=read_jsonl(folder / "metrics.jsonl"),
               sessions=json.loads(prov.read_text())["sessions"] if prov.is_file() else [],
               dataset=json.loads(data.read_text()) if data.is_file() else {},
               done=is_done(folder))


def load_runs(exp_dir):
    """Every run folder <exp_dir>/<network>/seed-<seed>/ that has a config.yaml."""
    return [read_run(path.parent) for path in sorted(Path(exp_dir).glob("*/seed-*/config.yaml"))]
