"""Trained networks for the studies that look at them (analysis, attacks, corruptions).

A study's job config names where the weights come from with three keys (``TrainedSource``,
a base class of those configs, holds them with their defaults):

    source      pretrained: the shipped seed-42 weights (models/pretrained/<network>.pt)
                runs: the run folders of a train experiment, <runs>/<network>/seed-<seed>/
                pretrained+runs: the shipped weights for seed 42, the run folders for the
                other seeds (several seeds without retraining the shipped one)
    runs        source runs: that experiment folder, e.g. results/mnist_table1
    checkpoint  source runs: last (checkpoint.pt) | best (best.pt)
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.core.config import ConfigError
from experiments.core.records import REPO, load_yaml
from models import build_network, load_pretrained, network_config, pretrained_info
from models.pretrained import FOLDER, available, pretrained_config

SOURCES = ("pretrained", "runs", "pretrained+runs")
SHIPPED_SEED = 42
CHECKPOINTS = {"last": "checkpoint.pt", "best": "best.pt"}


@dataclass
class TrainedSource:
    """The keys by which a study's job config names its trained network (a base class)."""
    label: str = ""  # how tables name the network (default: its training run's label)
    source: str = "pretrained"  # pretrained (models/pretrained, seed 42) | runs | pretrained+runs
    runs: str = "results/mnist_table1"  # source runs: the experiment folder of the networks
    checkpoint: str = "last"  # source runs: last (checkpoint.pt) | best (best.pt)

    def check(self):
        check_source(self)


def check_source(cfg):
    """ValueError('key: ...') for an unknown ``source`` or ``checkpoint`` (configs' check())."""
    if cfg.source not in SOURCES:
        raise ValueError(f"source: must be {' or '.join(SOURCES)}, got {cfg.source!r}")
    if cfg.checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint: must be {' or '.join(CHECKPOINTS)}, got {cfg.checkpoint!r}")


def network_source(cfg, network, seed):
    """(path of the weights, path of the run's config.yaml or None) for ``cfg.source``;
    ConfigError, before any work, when they are not there."""
    if cfg.source == "pretrained" or (cfg.source == "pretrained+runs" and seed == SHIPPED_SEED):
        if seed != SHIPPED_SEED:
            raise ConfigError(f"{network} seed {seed}: the shipped networks are seed 42 "
                              f"(use source: runs for other seeds)")
        path = FOLDER / f"{network}.pt"
        if not path.is_file():
            raise ConfigError(f"{path.relative_to(REPO)}: not found (shipped: "
                              f"{', '.join(available()) or 'none'})")
        return path.relative_to(REPO), None
    folder = Path(cfg.runs) / network / f"seed-{seed}"
    name = CHECKPOINTS[cfg.checkpoint]
    for path in (folder / "config.yaml", folder / name):
        if not path.is_file():
            raise ConfigError(f"{path}: not found (source: runs needs finished training runs "
                              f"with their {name}; train them first)")
    return folder / name, folder / "config.yaml"


def run_network_config(config):
    """The NetworkConfig of a run folder's config.yaml (ConfigError naming the file and key)."""
    run = load_yaml(Path(config).read_text())
    try:
        return network_config(run["model"]), run
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{config}: model: {e}") from None


def load_network(cfg, network, seed):
    """(the trained network in eval mode, its label, where it came from)."""
    weights, config = network_source(cfg, network, seed)
    if config is None:
        return load_pretrained(network), pretrained_info(network)["label"], str(weights)
    model, run = run_network_config(config)
    torch.manual_seed(seed)
    net = build_network(model)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"] if "model" in state else state)
    return net.eval(), run.get("label") or network, str(weights)


def initial_network(cfg, network, seed):
    """The network as training started it: built from its config right after
    ``torch.manual_seed(seed)``, as experiments/train/job.py builds it (the shipped networks:
    their stored config and training seed). The global RNG is left as it was."""
    weights, config = network_source(cfg, network, seed)
    if config is None:
        model, seed = pretrained_config(network), pretrained_info(network)["seed"]
    else:
        model, _ = run_network_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_network(model).eval()



def check_weights(suite, extra=lambda cfg: ()):
    """ConfigError, before any folder is claimed, when a network of ``suite`` (or one that
    ``extra(cfg)`` names, e.g. a transfer attack's source) has no weights for a seed."""
    for name in suite.run:
        cfg = suite.jobs[name]
        for seed in suite.seeds:
            for network in (name, *extra(cfg)):
                network_source(cfg, network, seed)
