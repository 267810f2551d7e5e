"""An experiment file: networks (each a full job recipe), seeds, and which networks to run.

    include: mnist/paper.yaml        # optional: files merged beneath this one
    experiment: mnist_sparse         # results go to results/<experiment>/
    seeds: [42]
    run: [sparse_cnn2]               # optional: default all networks, in file order
    defaults: {data: ..., model: ..., train: ..., noise: ...}
    networks:
      sparse_cnn2: {label: Sparse CNN-2, model: ..., train: ...}   # on top of defaults

Each network resolves to a ``JobConfig`` (defaults, then the network's entries, then the
command line's ``--set`` overrides). ``--set seeds=[42]`` and other top-level keys set the
experiment itself; any other key (``train.epochs=1``) applies to every network.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from data import DataConfig
from experiments.config import (ConfigError, deep_merge, from_dict, parse_override, read_yaml,
                                set_key)
from experiments.train import TrainConfig
from models import NetworkConfig

DEFAULT_LEVELS = [round(0.05 * i, 2) for i in range(11)]
SMOKE_OVERRIDES = {"train.epochs": 1, "data.train_limit": 256, "data.test_limit": 200}


@dataclass
class NoiseConfig:
    levels: list[float] = field(default_factory=lambda: list(DEFAULT_LEVELS))

    def check(self):
        if not self.levels or any(not 0.0 <= v <= 1.0 for v in self.levels):
            raise ValueError(f"levels: must be a non-empty list of values in [0, 1], "
                             f"got {self.levels}")
        if self.levels[0] != 0.0:
            raise ValueError("levels: must start with 0.0 (the clean test set)")


@dataclass
class JobConfig:
    """Everything one training run needs (with a network name and a seed)."""
    label: str = ""  # the paper's name for the network, e.g. "Sparse CNN-2"
    data: DataConfig = field(default_factory=DataConfig)
    model: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)


@dataclass
class ExperimentConfig:
    experiment: str
    seeds: list[int]
    networks: dict[str, JobConfig]
    run: list[str]
    task: str = "train"
    source: Optional[Path] = None
    smoke: bool = False


TOP_LEVEL = {"experiment", "seeds", "run", "defaults", "networks", "task", "description"}


def load_experiment(path, overrides=(), smoke=False):
    """Read, merge and validate an experiment file; raise ConfigError on any problem."""
    raw = read_yaml(path)
    where = f"{path}: "
    network_overrides = dict(SMOKE_OVERRIDES) if smoke else {}
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
    networks = _networks(raw, network_overrides, where)
    run = raw.get("run", list(networks))
    if not isinstance(run, list) or not run:
        raise ConfigError(f"{where}run: expected a non-empty list of network names")
    for name in run:
        if name not in networks:
            raise ConfigError(f"{where}run: unknown network {name!r} (defined: "
                              f"{', '.join(networks)})")
    return ExperimentConfig(experiment, seeds[:1] if smoke else seeds, networks, run,
                            source=Path(path), smoke=smoke)


def _seeds(seeds, where):
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ConfigError(f"{where}seeds: expected a non-empty list of integers, got {seeds!r}")
    return seeds


def _networks(raw, overrides, where):
    defaults = raw.get("defaults", {})
    from_dict(JobConfig, defaults, f"{where}defaults", partial=True)
    entries = raw.get("networks")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{where}networks: expected a mapping of network name -> settings")
    networks = {}
    for name, entry in entries.items():
        merged = deep_merge(defaults, entry or {})
        for key, value in overrides.items():
            set_key(merged, key.split("."), value)
        networks[name] = from_dict(JobConfig, merged, f"{where}networks.{name}")
    return networks
