"""What run.py does with its parsed arguments.

Each ``task:`` of an experiment file is a ``Task`` object (experiments/core/task.py) that its
study module defines and this module imports: train, theory, analysis, adversarial,
corruptions. The experiment file is read once; the task validates it into a Suite, runs its
pending jobs with the chosen launcher and writes its report. Studies never import each other:
they meet only here and in experiments/core/.
"""

import sys
from pathlib import Path

from data import DataError
from experiments.analysis.task import TASK as ANALYSIS
from experiments.core.config import ConfigError, read_yaml
from experiments.core.docs import update_docs
from experiments.core.launch import LAUNCHER_OPTIONS, JobsFailed, launcher_named
from experiments.core.runs import experiment_dir, refuse_reference
from experiments.core.speed import keep_freed_memory
from experiments.core.suite import task_name
from experiments.robust.adversarial_task import TASK as ADVERSARIAL
from experiments.robust.corruptions_task import TASK as CORRUPTIONS
from experiments.theory.task import TASK as THEORY
from experiments.train.suite import TASK as TRAIN

USER_ERRORS = (ConfigError, DataError)
TASKS = {task.name: task for task in (TRAIN, THEORY, ANALYSIS, ADVERSARIAL, CORRUPTIONS)}


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


def load(path, overrides=(), smoke=False):
    """(the Task, its validated Suite) of the experiment file ``path``, read once."""
    raw = read_yaml(path)
    name = task_name(raw, path)
    if name not in TASKS:
        raise ConfigError(f"{path}: task: must be one of {', '.join(TASKS)}, got {name!r}")
    task = TASKS[name]
    return task, task.load(raw, Path(path), overrides, smoke)


def load_experiment(path, overrides=(), smoke=False):
    """The validated Suite of the experiment file ``path`` (for scripts and notebooks)."""
    return load(path, overrides, smoke)[1]


def run_experiment(suite, out_root, force=False, launcher="local", **options):
    """Run ``suite``'s unfinished jobs with its task; return the experiment folder."""
    return TASKS[suite.task].run(suite, out_root, force, launcher, **options)


def _dispatch(args):
    keep_freed_memory()
    options = launcher_options(args)
    task, suite = load(args.config, args.overrides, smoke=args.smoke)
    out = Path(args.out)
    if not args.report:
        refuse_reference(out)
    exp_dir = experiment_dir(suite, out)
    if args.describe:
        task.describe(suite, exp_dir)
        return 0
    if not args.report:
        task.run(suite, out, force=args.force, launcher=args.launcher, **options)
    if task.report is not None:
        task.report(exp_dir, suite)
    if task.doc_blocks is not None:  # README.md, docs/*.md: the blocks of this config and out
        update_docs(args.config, out, lambda folder: task.doc_blocks(folder, suite), exp_dir,
                    args.overrides)
    return 0


def launcher_options(args):
    """The chosen launcher's options from the command line, checked before any work: a flag of
    another launcher, a bad count, or a launcher that is unknown or not installed stops here."""
    launcher_named(args.launcher)
    options = {}
    for option in LAUNCHER_OPTIONS:
        value = getattr(args, option.dest)
        if value is None:
            continue
        if option.launcher != args.launcher:
            raise ConfigError(f"{option.flag}: only with --launcher {option.launcher}")
        option.check(value)
        options[option.name] = value
    return options
