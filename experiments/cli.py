"""What run.py does with its parsed arguments: one entry per ``task:`` of an experiment file.

A task module offers ``load(path, overrides, smoke)`` -> Suite, ``run(suite, out, ...)`` and
optionally ``describe(suite, folder)``; its report is a function of the experiment folder.
Studies never import each other: they meet only here and in experiments/core/.
"""

import importlib
import sys
from pathlib import Path

from data import DataError
from experiments.core.config import ConfigError
from experiments.core.runs import experiment_dir, refuse_reference
from experiments.core.speed import keep_freed_memory
from experiments.core.suite import read_task

USER_ERRORS = (ConfigError, DataError)
TASKS = {  # task -> (module with load/run, "module:function" of its report, or None)
    "train": ("experiments.train.suite", "experiments.report:write_report"),
    "theory": ("experiments.theory.task", None),
}


def main(args):
    """Run the command; return the process exit code (2 for user errors, no traceback)."""
    try:
        return _dispatch(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished steps are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


def _dispatch(args):
    keep_freed_memory()
    if args.jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    name = read_task(args.config)
    if name not in TASKS:
        raise ConfigError(f"{args.config}: task: must be one of {', '.join(TASKS)}, got {name!r}")
    module, report = TASKS[name]
    task = importlib.import_module(module)
    suite = task.load(args.config, args.overrides, smoke=args.smoke)
    out = Path(args.out)
    if not args.report:
        refuse_reference(out)
    if args.describe:
        task.describe(suite, experiment_dir(suite, out))
        return 0
    if not args.report:
        task.run(suite, out, force=args.force, workers=args.jobs, threads=args.threads)
    if report:
        _resolve(report)(experiment_dir(suite, out))
    return 0


def _resolve(target):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)
