"""Sweeps as data: one folder per (network, seed), a ``done`` marker, resumable.

    <out>/<experiment>/<network>/seed-<seed>/   one run
        config.yaml      the resolved job config with network and seed (the run's identity)
        provenance.json  one entry per session: versions, git commit, device, wall time
        dataset.json     what the data is (title, noise axis), for reports that read no data
        metrics.jsonl    one JSON line per finished step of the job (an epoch, an attack)
        done             written last: the run is complete
    <out>/<experiment>/noisy_examples.npz       a few noisy test inputs (written by the task)
    <out>/<experiment>/...                      the report, rebuilt from the records

A user's runs go to ``results/`` (git-ignored); the records the README quotes are shipped in
``results/reference/``, where no run writes.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from experiments.core.config import ConfigError, to_dict
from experiments.core.records import (REPO, atomic_write, now, provenance, read_jsonl,
                                      write_yaml)

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
    existing = yaml.safe_load(path.read_text())
    changed = config_differences(existing, resolved)
    if changed:
        raise ConfigError(f"{folder}: holds a run of a different config (differs in "
                          f"{', '.join(changed[:3])}); use --force to overwrite it")
    if existing != resolved:
        write_yaml(path, resolved)


def config_differences(existing, resolved, prefix=""):
    """Dotted keys whose values differ, ignoring keys present only in ``resolved``."""
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
               config=yaml.safe_load((folder / "config.yaml").read_text()),
               records=read_jsonl(folder / "metrics.jsonl"),
               sessions=json.loads(prov.read_text())["sessions"] if prov.is_file() else [],
               dataset=json.loads(data.read_text()) if data.is_file() else {},
               done=is_done(folder))


def load_runs(exp_dir):
    """Every run folder <exp_dir>/<network>/seed-<seed>/ that has a config.yaml."""
    return [read_run(path.parent) for path in sorted(Path(exp_dir).glob("*/seed-*/config.yaml"))]
