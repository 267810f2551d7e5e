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
from experiments.core.docs import doc_blocks_target, update_docs
from experiments.core.launch import JobsFailed, launcher_named
from experiments.core.runs import experiment_dir, refuse_reference
from experiments.core.speed import keep_freed_memory
from experiments.core.suite import read_task

USER_ERRORS = (ConfigError, DataError)
TASKS = {  # task -> (module with load/run, "module:function" of its report, or None)
    "train": ("experiments.train.suite", "experiments.report:write_report"),
    "theory": ("experiments.theory.task", None),
    "analysis": ("experiments.analysis.task", "experiments.analysis.report:write_report"),
    "adversarial": ("experiments.robust.adversarial_task",
                    "experiments.robust.adversarial_report:write_report"),
    "corruptions": ("experiments.robust.corruptions_task",
                    "experiments.robust.corruptions_report:write_report"),
}
LAUNCHER_FLAGS = {  # launcher -> {command-line flag: its option name in experiments/core/launch.py}
    "local": {"jobs": "workers", "threads": "threads"},
    "ray": {"address": "address", "cpus_per_job": "cpus_per_job", "gpus_per_job": "gpus_per_job"},
}


def main(args):
    """Run the command; return the process exit code (2 for user errors, no traceback)."""
    try:
        return _dispatch(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except JobsFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished steps are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


def _dispatch(args):
    keep_freed_memory()
    options = launcher_options(args)
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
        task.run(suite, out, force=args.force, launcher=args.launcher, **options)
    if report:
        _resolve(report)(experiment_dir(suite, out))
    update_docs(args.config, out, _resolve(doc_blocks_target(module, report)),
                experiment_dir(suite, out))  # README.md, docs/*.md: blocks of this config and out
    return 0


def launcher_options(args):
    """The chosen launcher's options from the command line, checked before any work: a flag of
    another launcher, a bad count, or a launcher that is unknown or not installed stops here."""
    launcher_named(args.launcher)
    _check_counts(args)
    options = {}
    for launcher, flags in LAUNCHER_FLAGS.items():
        for flag, option in flags.items():
            if getattr(args, flag) is None:
                continue
            if launcher != args.launcher:
                raise ConfigError(f"{_flag(flag)}: only with --launcher {launcher}")
            options[option] = getattr(args, flag)
    return options


def _check_counts(args):
    for flag in ("jobs", "threads", "cpus_per_job"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"{_flag(flag)}: must be >= 1, got {value}")
    gpus = args.gpus_per_job
    if gpus is not None and (gpus <= 0 or gpus > 1 and not float(gpus).is_integer()):
        raise ConfigError(f"--gpus-per-job: must be a share in (0, 1] or a whole number of "
                          f"GPUs, got {gpus}")


def _flag(name):
    return "--" + name.replace("_", "-")


def _resolve(target):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)
