"""What one adversarial or corruptions job evaluates: which trained network (shipped or from a
run folder, ``TrainedSource``), on which test images, under which attacks or corruptions."""

from dataclasses import dataclass, field
from typing import Optional

from data import DataConfig
from data.corruptions import CORRUPTIONS, SEVERITIES
from experiments.core.trained import TrainedSource
from experiments.robust.checks import FULL_BOX
from models.kwinners import SURROGATES

EPS = [0.05, 0.1, 0.15, 0.2, 0.3]
METHODS = ("fgsm", "pgd", "square", "transfer")
LOSSES = ("ce", "margin")
AUTOATTACKS = ("apgd-ce", "apgd-t", "square")


@dataclass
class AttackConfig:
    """One attack: FGSM, PGD, Square (gradient-free) or transfer (the source network's PGD
    examples), on the cross-entropy or logit-margin loss, with the k-winners backward pass
    replaced by a surrogate (BPDA: identity = straight-through, relu) or not (null)."""
    method: str
    loss: str = "ce"
    surrogate: Optional[str] = None

    def check(self):
        if self.method not in METHODS:
            raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.surrogate is not None and self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate: must be null or one of {', '.join(SURROGATES)}, "
                             f"got {self.surrogate!r}")
        if self.surrogate is not None and self.method == "square":
            raise ValueError("surrogate: the Square attack uses no gradient")


@dataclass
class ConvergenceConfig:
    """The check that PGD has converged: these PGD attacks again with ``steps`` steps on the
    first ``images`` images of the subset (0: no check)."""
    images: int = 200
    steps: int = 100
    attacks: list[str] = field(default_factory=list)


@dataclass
class AutoAttackConfig:
    """The cross-check with pyautoattack (optional: requirements-attacks.txt) on the first
    ``images`` images (0: none): its ``attacks`` in turn, each on the images that survive."""
    images: int = 100
    attacks: list[str] = field(default_factory=lambda: list(AUTOATTACKS))
    eps: Optional[list[float]] = field(default_factory=lambda: [0.1, 0.2])  # null: the study's
    iterations: int = 100  # APGD steps (its standard setting)
    targets: int = 9  # APGD-T target classes (standard: 9)
    queries: int = 5000  # Square queries (standard: 5000)


@dataclass
class AdversarialConfig(TrainedSource):
    data: DataConfig = field(default_factory=DataConfig)
    images: int = 1000  # the fixed random subset of test images, the same for every network
    subset_seed: int = 0
    eps: list[float] = field(default_factory=lambda: list(EPS))  # L-inf, in [0, 1] pixel units
    attacks: dict[str, AttackConfig] = field(default_factory=dict)  # name -> attack
    steps: int = 40  # PGD steps (step size 2.5 eps / steps)
    restarts: int = 2  # PGD runs; each after the first on the images that survived
    queries: int = 500  # Square attack queries per image (AutoAttack's Square: 5,000)
    transfer_from: str = "dense_cnn2"  # the network whose PGD examples the transfer attack uses
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)
    seed: int = 0  # random starts and Square's draws (the same for every network)
    batch_size: int = 500
    device: str = "cpu"

    def check(self):
        super().check()
        _check_data(self.data)
        if not self.eps or any(not 0 < e < FULL_BOX for e in self.eps):
            raise ValueError(f"eps: must be a non-empty list in (0, 1), got {self.eps}")
        for key in ("images", "steps", "restarts", "queries", "batch_size"):
            _check_positive(key, getattr(self, key))
        if not self.attacks:
            raise ValueError("attacks: name at least one (configs/mnist_adversarial.yaml lists "
                             "the study's)")
        pgd = [name for name, a in self.attacks.items() if a.method == "pgd"]
        for name in self.convergence.attacks:
            if name not in pgd:
                raise ValueError(f"convergence.attacks: {name!r} is not a PGD attack of "
                                 f"attacks ({', '.join(pgd)})")
        for name in self.autoattack.attacks:
            if name not in AUTOATTACKS:
                raise ValueError(f"autoattack.attacks: must be among {', '.join(AUTOATTACKS)}, "
                                 f"got {name!r}")
        for key in ("iterations", "targets", "queries"):
            _check_positive(f"autoattack.{key}", getattr(self.autoattack, key))

    @property
    def autoattack_eps(self):
        return self.eps if self.autoattack.eps is None else self.autoattack.eps


@dataclass
class CorruptionsConfig(TrainedSource):
    data: DataConfig = field(default_factory=DataConfig)  # data.test_limit: a subset
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    seed: int = 0  # the corruptions' random draws (the same for every network)
    batch_size: int = 1000
    device: str = "cpu"

    def check(self):
        super().check()
        _check_data(self.data)
        for name in self.corruptions:
            if name not in CORRUPTIONS:
                raise ValueError(f"corruptions: {name!r} is not one of {', '.join(CORRUPTIONS)}")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError(f"severities: must be a non-empty list in {list(SEVERITIES)}, "
                             f"got {self.severities}")
        _check_positive("batch_size", self.batch_size)


def _check_data(data):
    if data.name != "mnist":
        raise ValueError(f"data.name: these studies perturb MNIST pixels in [0, 1]; got "
                         f"{data.name!r}")


def _check_positive(key, value):
    if value < 1:
        raise ValueError(f"{key}: must be >= 1, got {value}")


ADVERSARIAL_SMOKE = {"images": 12, "eps": [0.2], "steps": 3, "restarts": 2, "queries": 8,
                     "convergence.images": 6, "convergence.steps": 6,
                     "autoattack.images": 4, "autoattack.eps": None, "autoattack.iterations": 3,
                     "autoattack.targets": 2, "autoattack.queries": 8}
CORRUPTIONS_SMOKE = {"data.test_limit": 200, "severities": [1, 5]}
