"""What run.py does with its parsed arguments (kept here so run.py is argument parsing only)."""

import sys
from pathlib import Path

from data import DataError
from experiments.config import ConfigError, read_yaml
from experiments.speed import keep_freed_memory

USER_ERRORS = (ConfigError, DataError)


def main(args):
    """Run the command; return the process exit code (2 for user errors, no traceback)."""
    try:
        return _dispatch(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished epochs are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


def _dispatch(args):
    keep_freed_memory()
    if args.jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    task = read_yaml(args.config).get("task", "train")
    if task == "theory":
        from experiments.theory import run_theory
        return run_theory(args)
    if task != "train":
        raise ConfigError(f"{args.config}: task: must be 'train' or 'theory', got {task!r}")
    from experiments.experiment import load_experiment
    from experiments.suite import experiment_dir, run_experiment
    exp = load_experiment(args.config, args.overrides, smoke=args.smoke)
    out = Path(args.out)
    if args.describe:
        from experiments.describe import describe
        describe(exp, experiment_dir(exp, out))
        return 0
    if not args.report:
        run_experiment(exp, out, jobs=args.jobs, force=args.force, threads=args.threads)
    from experiments.report import write_report
    write_report(experiment_dir(exp, out))
    return 0
