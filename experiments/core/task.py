"""A study as run.py sees it: a ``Task`` object that each study module defines and
experiments/cli.py imports (no lookup by module name).

    load(raw, path, overrides, smoke) -> Suite     the experiment file, validated, parsed once
    run(suite, out_root, force, launcher, **options) -> the experiment folder
    describe(suite, exp_dir)                       --describe: what would run, no work
    report(exp_dir) -> paths                       tables and figures from the records alone
    doc_blocks(exp_dir, suite) -> {block: markdown}  the generated blocks of README.md, docs/

``run_pending`` is every suite's side of the run lifecycle (the job's side is
experiments/core/lifecycle.py): it opens the launcher (which may check what it needs first),
claims every job's folder (refusing a folder that holds another config's run), prints how many
are done, and runs the rest.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

from experiments.core.config import ConfigError
from experiments.core.launch import open_launcher
from experiments.core.runs import (claim_dir, experiment_dir, is_done, job_list, prepare,
                                   refuse_reference, reopen, resolved_config)
from experiments.core.suite import load_suite


@dataclass(frozen=True)
class Task:
    name: str  # the ``task:`` of an experiment file
    job_config: type  # the dataclass of one job's resolved config
    run_job: Callable  # (config, network, seed, folder, progress) -> records
    summary: Callable  # (network, seed, records) -> the line printed when a job ends
    report: Optional[Callable] = None  # (exp_dir, suite) -> written paths
    describe_suite: Optional[Callable] = None  # (suite, exp_dir) for --describe
    smoke_overrides: dict = field(default_factory=dict)  # dotted key -> value under --smoke
    check: Optional[Callable] = None  # (suite): ConfigError before any folder is claimed
    before_jobs: Optional[Callable] = None  # (suite, exp_dir): once, before pending jobs
    doc_blocks: Optional[Callable] = None  # (exp_dir) -> {block name: markdown}
    loader: Optional[Callable] = None  # (raw, path, overrides, smoke) -> Suite, if not a suite
    reopen: Optional[Callable] = None  # (job config, folder) -> why a done run must resume
    #                                    (steps its experiment file gained since), or None

    def load(self, raw, path, overrides=(), smoke=False):
        if self.loader is not None:
            return self.loader(raw, path, overrides, smoke)
        return load_suite(raw, path, self.job_config, overrides, smoke, self.smoke_overrides)

    def run(self, suite, out_root, force=False, launcher="local", **options):
        return run_pending(suite, out_root, self, force, launcher, **options)

    def describe(self, suite, exp_dir):
        if self.describe_suite is None:
            raise ConfigError(f"{suite.source}: --describe is not available for task "
                              f"{self.name!r}")
        self.describe_suite(suite, exp_dir)


def run_pending(suite, out_root, task, force=False, launcher="local", **options):
    """Run every unfinished job of ``suite`` with ``task``'s job function; return the
    experiment folder. ``task.check(suite)`` runs first (e.g. every network's weights exist),
    then the launcher's own checks, and ``task.before_jobs(suite, exp_dir)`` once before the
    jobs start."""
    if task.check is not None:
        task.check(suite)
    refuse_reference(out_root)
    if task.reopen is not None and not force:
        reopen_done(suite, out_root, task.reopen)
    todo = [job for job in job_list(suite, out_root) if force or not is_done(job.folder)]
    with open_launcher(launcher, todo, **options) as run:
        pending = prepare(suite, out_root, force)
        total = len(suite.run) * len(suite.seeds)
        print(f"{suite.experiment}: {total} jobs, {total - len(pending)} already done, "
              f"{len(pending)} to run")
        exp_dir = experiment_dir(suite, out_root)
        if pending:
            if task.before_jobs is not None:
                task.before_jobs(suite, exp_dir)
            run(pending, task.run_job, task.summary)
    return exp_dir


def reopen_done(suite, out_root, why):
    """Reopen every done run of ``suite`` for which ``why(config, folder)`` gives a reason
    (the run keeps its records; the next run goes on from them), saying so."""
    for job in job_list(suite, out_root):
        if is_done(job.folder) and (reason := why(job.config, job.folder)):
            claim_dir(job.folder, resolved_config(job.config, job.name, job.seed))  # same config
            reopen(job.folder)
            print(f"{job.name} seed {job.seed}: reopened ({reason})")
