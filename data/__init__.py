"""Datasets, features and noise. Knows nothing about models.

A *task* is what the training loop needs from a dataset, all as model-ready tensors:

    task.input_shape, task.num_classes, task.num_train (samples per epoch)
    task.train_batches(batch_size, generator) -> iterator of (x, y)   one epoch, on the CPU
    task.test_set()                          -> (x, y)                clean test inputs
    task.noisy_test_set(level, generator)    -> (x, y)                test inputs at one noise level
"""

from dataclasses import dataclass
from typing import Optional


class DataError(Exception):
    """A missing, corrupt or unreadable dataset file: reported in one line, exit code 2."""


@dataclass
class DataConfig:
    name: str = "mnist"  # mnist | gsc
    root: str = "datasets"  # where datasets are kept (git-ignored)
    source: str = "real"  # gsc: real | synthetic (the offline stand-in)
    train_limit: Optional[int] = None  # use only the first N training samples (smoke runs)
    test_limit: Optional[int] = None  # use only the first N test samples (smoke runs)
    augment: bool = False  # gsc: the paper's waveform/STFT augmentation
    silence_fraction: float = 0.0  # gsc: all-zero clips added to training, as a fraction of it
    download: bool = True  # fetch the dataset when it is missing

    def check(self):
        if self.name not in ("mnist", "gsc"):
            raise ValueError(f"name: must be 'mnist' or 'gsc', got {self.name!r}")
        if self.source not in ("real", "synthetic"):
            raise ValueError(f"source: must be 'real' or 'synthetic', got {self.source!r}")
        for key in ("train_limit", "test_limit"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key}: must be >= 1 or null, got {value}")
        if not 0.0 <= self.silence_fraction < 1.0:
            raise ValueError(f"silence_fraction: must be in [0, 1), got {self.silence_fraction}")


def load_task(cfg, seed=0):
    """The task for ``cfg`` (a DataConfig); ``seed`` fixes any randomness in building it."""
    if cfg.name == "mnist":
        from data.mnist import MNISTTask
        return MNISTTask(cfg)
    from data.speech_commands import SpeechCommandsTask
    return SpeechCommandsTask(cfg, seed)
