"""Sweeps as data: one folder per (network, seed), a ``done`` marker, resumable.

    <out>/<experiment>/<network>/seed-<seed>/   one run (see experiments/job.py)
    <out>/<experiment>/table.md, table.csv, *.png   the report, rebuilt from the records

Rerunning skips finished jobs and resumes unfinished ones. ``--jobs N`` runs N jobs in
parallel processes, each with cpu_count / N torch threads unless ``threads`` says otherwise.
(Oversubscribed threads are very costly: a 2-thread job sharing 2 cores with two others ran
30x slower than with 1 thread.)
"""

import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiments.job import claim_dir, resolved_config, run_job
from experiments.speed import keep_freed_memory


def experiment_dir(exp, out_root):
    return Path(out_root) / ("smoke" if exp.smoke else "") / exp.experiment


def job_list(exp, out_root):
    """[(network, seed, run folder)], seed by seed, so a partial suite covers every network."""
    root = experiment_dir(exp, out_root)
    return [(name, seed, root / name / f"seed-{seed}") for seed in exp.seeds for name in exp.run]


def prepare(exp, out_root, force=False):
    """Check every job's folder before any work; with ``force`` wipe the ones we will rerun."""
    jobs = job_list(exp, out_root)
    for name, seed, run_dir in jobs:
        if force and run_dir.exists():
            shutil.rmtree(run_dir)
        claim_dir(run_dir, resolved_config(exp.networks[name], name, seed))
    return [j for j in jobs if not (j[2] / "done").is_file()]


def run_experiment(exp, out_root, jobs=1, force=False, threads=None):
    """Run all unfinished jobs of ``exp``; return the experiment folder."""
    pending = prepare(exp, out_root, force)
    if threads is None and jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    total = len(exp.run) * len(exp.seeds)
    print(f"{exp.experiment}: {total} jobs, {total - len(pending)} already done, "
          f"{len(pending)} to run" + (f" on {jobs} processes" if jobs > 1 and pending else ""))
    if jobs <= 1:
        if threads:  # else torch's default: one per physical core
            torch.set_num_threads(threads)
        for name, seed, run_dir in pending:
            print(f"{name} seed {seed} -> {run_dir}")
            run_job(exp.networks[name], name, seed, run_dir, progress=True)
    else:
        _run_parallel(exp, pending, jobs, threads)
    return experiment_dir(exp, out_root)


def _run_parallel(exp, pending, jobs, threads):
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_worker, exp.networks[name], name, seed, run_dir, threads):
                   (name, seed) for name, seed, run_dir in pending}
        for future in tqdm(as_completed(futures), total=len(futures), desc="jobs", unit="job"):
            name, seed = futures[future]
            records = future.result()
            best = max(records, key=lambda r: r["test_accuracy"])
            tqdm.write(f"{name} seed {seed}: best test {best['test_accuracy']:.2f}% "
                       f"(epoch {best['epoch']}), noise score {best['noise_score']:,}",
                       file=sys.stdout)


def _worker(job, name, seed, run_dir, threads):
    keep_freed_memory()
    torch.set_num_threads(threads)
    return run_job(job, name, seed, run_dir, progress=False)
