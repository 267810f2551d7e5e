"""An experiment file: a suite of jobs, one per (network, seed), each a full job recipe.

    include: networks/mnist.yaml     # optional: files merged beneath this one
    task: train                      # which study runs the jobs (default: train)
    experiment: mnist_sparse         # results go to results/<experiment>/
    seeds: [42]
    run: [sparse_cnn2]               # optional: default all networks, in file order
    defaults: {...}                  # the job settings every network starts from
    networks:
      sparse_cnn2: {label: Sparse CNN-2, model: ..., train: ...}   # on top of defaults
      sparse_cnn2_dropout: {base: sparse_cnn2, label: ..., model: {dropout: 0.5}}

Each network resolves to the task's job config dataclass (defaults, then its ``base``
network's entries when it names one, then its own entries, then the command line's ``--set``
overrides): a variant of a network states only how it differs. ``--set seeds=[42]`` and other top-level
keys set the experiment itself; any other key (``train.epochs=1``) applies to every network.
"""

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from experiments.core.config import ConfigError, deep_merge, from_dict, parse_override, set_key

TOP_LEVEL = {"experiment", "seeds", "run", "defaults", "networks", "task", "description",
             "compare", "axes"}


@dataclass
class CompareConfig:
    """``compare:`` the paired comparisons (a - b on the same seeds) the report tests: every
    network of ``run`` against ``against``, and the listed ``pairs`` [a, b]."""
    against: Optional[str] = None
    pairs: list[list[str]] = field(default_factory=list)


@dataclass
class AxisConfig:
    """One entry of ``axes:``: a config key swept over ``networks`` (the report draws the
    scores against the key's value, e.g. model.hidden.k, or model.conv.0.k for a list)."""
    key: str
    networks: list[str]


@dataclass
class Suite:
    """A validated experiment file: ``jobs[name]`` is the resolved job config of a network."""
    experiment: str
    seeds: list[int]
    jobs: dict[str, Any]
    run: list[str]
    source: Path
    smoke: bool = False
    task: str = "train"  # the ``task:`` of the experiment file
    compare: CompareConfig = field(default_factory=CompareConfig)
    axes: dict[str, AxisConfig] = field(default_factory=dict)

    def pairs(self):
        """Every (a, b) of ``compare`` whose networks both run, in file order."""
        pairs = [(name, self.compare.against) for name in self.run
                 if self.compare.against and name != self.compare.against]
        pairs += [tuple(pair) for pair in self.compare.pairs]
        return [(a, b) for a, b in pairs if a in self.run and b in self.run]


def task_name(raw, path):
    """The ``task:`` of an experiment file's mapping ``raw`` (default 'train')."""
    task = raw.get("task", "train")
    if not isinstance(task, str):
        raise ConfigError(f"{path}: task: expected a name, got {task!r}")
    return task


def load_suite(raw, path, job_type, overrides=(), smoke=False, smoke_overrides=None):
    """Validate an experiment file (``raw``: its mapping as ``read_yaml(path)`` returns it,
    includes merged) into a Suite of ``job_type`` configs.

    With ``smoke``, ``smoke_overrides`` (dotted key -> value) apply to every network before
    the command line's, and only the first seed runs. Raises ConfigError on any problem.
    """
    raw = copy.deepcopy(raw)
    where = f"{path}: "
    network_overrides = dict(smoke_overrides or {}) if smoke else {}
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] in TOP_LEVEL:
            set_key(raw, keys, value)
        else:
            network_overrides[".".join(keys)] = value
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown key (valid keys: "
                          f"{', '.join(sorted(TOP_LEVEL))})")
    experiment = raw.get("experiment")
    if not isinstance(experiment, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", experiment):
        raise ConfigError(f"{where}experiment: expected a name of letters, digits, _ and -, "
                          f"got {experiment!r}")
    seeds = _seeds(raw.get("seeds"), where)
    jobs = _jobs(raw, job_type, network_overrides, where)
    run = raw.get("run", list(jobs))
    if not isinstance(run, list) or not run:
        raise ConfigError(f"{where}run: expected a non-empty list of network names")
    for name in run:
        if name not in jobs:
            raise ConfigError(f"{where}run: unknown network {name!r} (defined: "
                              f"{', '.join(jobs)})")
    compare = from_dict(CompareConfig, raw.get("compare", {}), f"{where}compare")
    axes = from_dict(Axes, {"axes": raw.get("axes", {})}, where).axes
    _check_names(compare, axes, jobs, where)
    return Suite(experiment, seeds[:1] if smoke else seeds, jobs, run, source=Path(path),
                 smoke=smoke, task=task_name(raw, path), compare=compare, axes=axes)


@dataclass
class Axes:
    axes: dict[str, AxisConfig] = field(default_factory=dict)


def _check_names(compare, axes, jobs, where):
    """ConfigError for a network of ``compare`` or ``axes`` that the file does not define."""
    named = [("compare.against", compare.against)] if compare.against else []
    for i, pair in enumerate(compare.pairs):
        if len(pair) != 2:
            raise ConfigError(f"{where}compare.pairs[{i}]: expected [a, b], got {pair!r}")
        named += [(f"compare.pairs[{i}]", name) for name in pair]
    named += [(f"axes.{axis}.networks", name) for axis, a in axes.items() for name in a.networks]
    for key, name in named:
        if name not in jobs:
            raise ConfigError(f"{where}{key}: unknown network {name!r}")


def _seeds(seeds, where):
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ConfigError(f"{where}seeds: expected a non-empty list of integers, got {seeds!r}")
    return seeds


def _jobs(raw, job_type, overrides, where):
    defaults = raw.get("defaults", {})
    from_dict(job_type, defaults, f"{where}defaults", partial=True)
    entries = raw.get("networks")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{where}networks: expected a mapping of network name -> settings")
    jobs = {}
    for name in entries:
        merged = deep_merge(defaults, _entry(entries, name, where))
        for key, value in overrides.items():
            set_key(merged, key.split("."), value)
        jobs[name] = from_dict(job_type, merged, f"{where}networks.{name}")
    return jobs


def _entry(entries, name, where, seen=()):
    """A network's settings with its ``base`` chain merged beneath them."""
    entry = dict(entries[name] or {})
    base = entry.pop("base", None)
    if base is None:
        return entry
    if base not in entries or base in seen or base == name:
        problem = "a loop of bases" if base in entries else "no such network"
        raise ConfigError(f"{where}networks.{name}.base: {base!r}: {problem}")
    return deep_merge(_entry(entries, base, where, (*seen, name)), entry)
