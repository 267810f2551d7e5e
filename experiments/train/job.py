"""One training run: a function of (resolved config, network, seed, output folder) alone.

Besides the run-folder files of experiments/core/runs.py it writes, in ``folder``:
    checkpoint.pt    model + optimizer after the last finished epoch (resume point)
    best.pt          the model weights of the best clean-test epoch so far

Rerunning a finished job does nothing; an interrupted one resumes from its last finished
epoch and ends with the same metrics as an uninterrupted run (every epoch's randomness is
seeded from (seed, epoch), and the checkpoint holds the duty cycles and boost strength).
"""

import time
from pathlib import Path

import torch

from data import dataset_info, load_dataset
from experiments.core.measures import entropy_ratio
from experiments.core.lifecycle import open_run
from experiments.core.records import save_torch
from experiments.core.selection import best_epoch
from experiments.train.loop import (make_optimizer, num_batches, resolve_device, set_lr,
                                    train_epoch)
from experiments.train.sweep import NoiseSweep
from models import KWinners, KWinners2d, boost_strength, build_network, update_boost_strength


def epoch_generator(seed, epoch):
    """Seeds torch's global RNG (dropout) and returns the shuffling generator for one epoch."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def load_checkpoint(folder, model, optimizer, device):
    """Restore the last finished epoch; return how many epochs are finished (0 if none)."""
    path = Path(folder) / "checkpoint.pt"
    if not path.is_file():
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epochs_finished"]


def save_checkpoint(folder, model, optimizer, epochs_finished):
    save_torch(Path(folder) / "checkpoint.pt",
               {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "epochs_finished": epochs_finished})


def run_job(job, network, seed, folder, progress=True):
    """Train ``network`` with ``seed`` as ``job`` says; return the list of epoch records."""
    with open_run(folder, job, network, seed, dataset_info(job.data)) as run:
        if run.finished:
            return run.records
        torch.manual_seed(seed)
        device = resolve_device(job.train.device)
        model = build_network(job.model).to(device)
        optimizer = make_optimizer(model, job.train)
        start = load_checkpoint(run.folder, model, optimizer, device)
        run.keep(run.records[:start])
        run.start(device, start, job.train.epochs)
        dataset = load_dataset(job.data)
        sweep = NoiseSweep(dataset, job.noise.levels, seed, device,
                           validation=job.data.validation > 0)
        for epoch in range(start, job.train.epochs):
            record = run_epoch(model, optimizer, dataset, sweep, job, epoch=epoch, seed=seed,
                               device=device, progress=progress)
            run.add(record)
            if best_epoch(run.records) is record:
                save_torch(run.folder / "best.pt", model.state_dict())
            save_checkpoint(run.folder, model, optimizer, epoch + 1)
            print(f"{network} seed {seed} epoch {epoch}: test {record['test_accuracy']:.2f}%, "
                  f"noise score {record['noise_score']:,} ({record['seconds']:.0f} s)",
                  flush=True)
    return run.records


def run_epoch(model, optimizer, dataset, sweep, job, *, epoch, seed, device, progress):
    """Train one epoch, decay the boost, run the noise sweep; return the epoch's record."""
    cfg = job.train
    lr, beta, batch_size = cfg.lr_at(epoch), boost_strength(model), cfg.batch_size_at(epoch)
    set_lr(optimizer, lr)
    generator = epoch_generator(seed, epoch)
    t0 = time.perf_counter()
    loss = train_epoch(model, dataset.train_batches(batch_size, generator), optimizer, device,
                       total=num_batches(dataset.num_train, batch_size), progress=progress,
                       desc=f"epoch {epoch}")
    update_boost_strength(model)
    t1 = time.perf_counter()
    correct = sweep.run(model, cfg.test_batch_size, device, job.eval.engine)
    t2 = time.perf_counter()
    return {"epoch": epoch, "lr": lr, "boost_strength": beta, "batch_size": batch_size,
            "train_loss": loss, **sweep.record(correct), **layer_summaries(model),
            "train_seconds": t1 - t0, "eval_seconds": t2 - t1, "seconds": t2 - t0}


def layer_summaries(model):
    """After an epoch, per layer of ``model`` (by its name in the network):
    ``duty_cycle_entropy``: each k-winners layer's duty-cycle entropy, H(p) / log(n) over its
    n duty-cycle groups (units; channels in a conv layer), 1.0 when all win equally often
    (None before any unit has won); ``weight_norm``: each conv and linear layer's mean L2 norm
    of a unit's weight vector (its incoming weights; masked weights count as zeros)."""
    entropy, norms = {}, {}
    for name, layer in model.named_children():
        if isinstance(layer, (KWinners, KWinners2d)):
            value = entropy_ratio(layer.duty_cycle.detach().flatten().cpu().numpy())
            entropy[name] = None if value != value else value
        inner = getattr(layer, "module", layer)  # SparseWeights and DropConnect wrap it
        if isinstance(inner, (torch.nn.Linear, torch.nn.Conv2d)):
            norms[name] = float(inner.weight.detach().flatten(1).norm(dim=1).mean())
    return {"duty_cycle_entropy": entropy, "weight_norm": norms}


def summary(network, seed, records):
    """The line a launcher prints when a run finishes."""
    best = best_epoch(records)
    return (f"{network} seed {seed}: best test {best['test_accuracy']:.2f}% (epoch "
            f"{best['epoch']}), noise score {best['noise_score']:,}")
