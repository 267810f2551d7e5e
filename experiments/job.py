"""One training run: a function of (resolved config, network, seed, output folder) alone.

It writes, in ``out_dir``:
    config.yaml      the resolved JobConfig with network and seed (the run's identity)
    provenance.json  versions, git commit, device, and one entry per session (start, wall time)
    metrics.jsonl    one JSON line per finished epoch
    checkpoint.pt    model + optimizer after the last finished epoch (resume point)
    best.pt          the model weights of the best clean-test epoch so far
    done             written last: the run is complete

Rerunning a finished job does nothing; an interrupted one resumes from its last finished
epoch and ends with the same metrics as an uninterrupted run (every epoch's randomness is
seeded from (seed, epoch), and the checkpoint holds the duty cycles and boost strength).
"""

import io
import json
import time
from pathlib import Path

import torch
import yaml

from data import load_task
from experiments.config import ConfigError, to_dict
from experiments.evaluate import NoiseSweep
from experiments.records import (atomic_write, now, provenance, read_jsonl, write_jsonl,
                                 write_yaml)
from experiments.train import (make_optimizer, num_batches, resolve_device, set_lr,
                               train_epoch)
from models import boost_strength, build_network, update_boost_strength


def resolved_config(job, network, seed):
    return {"network": network, "seed": seed, **to_dict(job)}


def claim_dir(out_dir, resolved):
    """Create ``out_dir`` for this config; refuse a folder that holds another config's run.

    Keys that the code gained after the run started (new options, whose defaults keep the old
    behaviour) are not a difference: they are added to the saved config.
    """
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        write_yaml(path, resolved)
        return
    existing = yaml.safe_load(path.read_text())
    changed = config_differences(existing, resolved)
    if changed:
        raise ConfigError(f"{out_dir}: holds a run of a different config (differs in "
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


def epoch_generator(seed, epoch):
    """Seeds torch's global RNG (dropout) and returns the shuffling generator for one epoch."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def load_checkpoint(out_dir, model, optimizer, device):
    """Restore the last finished epoch; return how many epochs are finished (0 if none)."""
    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epochs_finished"]


def save_checkpoint(out_dir, model, optimizer, epochs_finished):
    atomic_write(Path(out_dir) / "checkpoint.pt",
                 _torch_bytes({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "epochs_finished": epochs_finished}))


def _torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def run_job(job, network, seed, out_dir, progress=True):
    """Train ``network`` with ``seed`` as ``job`` says; return the list of epoch records."""
    out_dir = Path(out_dir)
    if (out_dir / "done").is_file():
        return read_jsonl(out_dir / "metrics.jsonl")
    claim_dir(out_dir, resolved_config(job, network, seed))
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    device = resolve_device(job.train.device)
    model = build_network(job.model).to(device)
    optimizer = make_optimizer(model, job.train)
    start = load_checkpoint(out_dir, model, optimizer, device)
    records = read_jsonl(out_dir / "metrics.jsonl")[:start]
    _log_session(out_dir, device, start, job.train.epochs)
    task = load_task(job.data, seed)
    sweep = NoiseSweep(task, job.noise.levels, seed, device)
    for epoch in range(start, job.train.epochs):
        record = run_epoch(model, optimizer, task, sweep, job, epoch, seed, device, progress)
        if not records or record["test_accuracy"] > max(r["test_accuracy"] for r in records):
            atomic_write(out_dir / "best.pt", _torch_bytes(model.state_dict()))
        records.append(record)
        write_jsonl(out_dir / "metrics.jsonl", records)
        save_checkpoint(out_dir, model, optimizer, epoch + 1)
        print(f"{network} seed {seed} epoch {epoch}: test {record['test_accuracy']:.2f}%, "
              f"noise score {record['noise_score']:,} ({record['seconds']:.0f} s)", flush=True)
    _log_session(out_dir, device, start, job.train.epochs, time.perf_counter() - t0)
    atomic_write(out_dir / "done", json.dumps({"finished": now(), "epochs": len(records)}) + "\n")
    return records


def run_epoch(model, optimizer, task, sweep, job, epoch, seed, device, progress):
    """Train one epoch, decay the boost, run the noise sweep; return the epoch's record."""
    cfg = job.train
    lr, beta, batch_size = cfg.lr_at(epoch), boost_strength(model), cfg.batch_size_at(epoch)
    set_lr(optimizer, lr)
    generator = epoch_generator(seed, epoch)
    t0 = time.perf_counter()
    loss = train_epoch(model, task.train_batches(batch_size, generator), optimizer, device,
                       total=num_batches(task.num_train, batch_size), progress=progress,
                       desc=f"epoch {epoch}")
    update_boost_strength(model)
    t1 = time.perf_counter()
    correct = sweep.run(model, cfg.test_batch_size, device)
    t2 = time.perf_counter()
    return {"epoch": epoch, "lr": lr, "boost_strength": beta, "batch_size": batch_size,
            "train_loss": loss, **sweep.record(correct), "train_seconds": t1 - t0,
            "eval_seconds": t2 - t1, "seconds": t2 - t0}


def _log_session(out_dir, device, first_epoch, epochs, wall_seconds=None):
    """Open a session entry in provenance.json (wall_seconds None), or close the last one."""
    path = Path(out_dir) / "provenance.json"
    sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    if wall_seconds is None:
        sessions.append({"started": now(), "finished": None, "wall_seconds": None,
                         "epochs": [first_epoch, epochs], **provenance(device)})
    else:
        sessions[-1].update(finished=now(), wall_seconds=round(wall_seconds, 1))
    atomic_write(path, json.dumps({"sessions": sessions}, indent=2) + "\n")
