"""What one training job is: the data, the network, the schedule and the noise levels.

A ``JobConfig`` is built from an experiment file (experiments/core/suite.py) and written,
with the network name and the seed, as the run's config.yaml: the run's identity.
"""

from dataclasses import dataclass, field
from typing import Optional

from data import DataConfig
from data.noise import PAPER_LEVELS
from experiments.train.loop import ENGINES
from models import NetworkConfig

SMOKE_OVERRIDES = {"train.epochs": 1, "data.train_limit": 256, "data.test_limit": 200}


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    first_epoch_batch_size: Optional[int] = None  # None: same as batch_size
    test_batch_size: int = 1000
    lr: float = 0.01
    lr_gamma: float = 0.8  # epoch e uses lr * lr_gamma**e
    momentum: float = 0.0
    weight_decay: float = 0.0
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N

    def check(self):
        for key in ("epochs", "batch_size", "test_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.first_epoch_batch_size is not None and self.first_epoch_batch_size < 1:
            raise ValueError(f"first_epoch_batch_size: must be >= 1, got "
                             f"{self.first_epoch_batch_size}")
        if self.lr <= 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr: must be > 0 with lr_gamma in (0, 1], got {self.lr}, "
                             f"{self.lr_gamma}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError("momentum: momentum and weight_decay must be >= 0")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def lr_at(self, epoch):
        return self.lr * self.lr_gamma ** epoch

    def batch_size_at(self, epoch):
        if epoch == 0 and self.first_epoch_batch_size is not None:
            return self.first_epoch_batch_size
        return self.batch_size


@dataclass
class NoiseConfig:
    levels: list[float] = field(default_factory=lambda: list(PAPER_LEVELS))

    def check(self):
        if not self.levels or any(not 0.0 <= v <= 1.0 for v in self.levels):
            raise ValueError(f"levels: must be a non-empty list of values in [0, 1], "
                             f"got {self.levels}")
        if self.levels[0] != 0.0:
            raise ValueError("levels: must start with 0.0 (the clean test set)")


@dataclass
class EvalConfig:
    """How the noise sweep evaluates the network after each epoch: ``plain`` (the model
    itself, what every shipped record used) or ``sparse`` (models.sparse_inference: the same
    winners and predictions but for ties within float32 rounding; faster on the CPU)."""
    engine: str = "plain"

    def check(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine: must be one of {', '.join(ENGINES)}, got {self.engine!r}")


@dataclass
class JobConfig:
    """Everything one training run needs (with a network name and a seed)."""
    label: str = ""  # the paper's name for the network, e.g. "Sparse CNN-2"
    data: DataConfig = field(default_factory=DataConfig)
    model: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
