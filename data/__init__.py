"""Datasets, features, noise and corruptions. Knows nothing about models.

A *dataset* is what the training loop needs, all as model-ready tensors:

    ds.input_shape, ds.num_classes, ds.num_train (samples per epoch)
    ds.train_batches(batch_size, generator) -> iterator of (x, y)   one epoch, on the CPU
    ds.test_set()                          -> (x, y)                clean test inputs
    ds.noisy_test_set(level, generator)    -> (x, y)                test inputs at one noise level
    ds.validation_set()                    -> (x, y) or None        held-out training inputs

Every dataset is one entry of ``DATASETS``: its title, the noise axis of its plots, the
sources it can be read from, the function that loads it, the one that only makes its files
ready (``prepare_dataset``: fetched, generated or verified, nothing loaded: what a launcher does
once before its jobs start) and the size of its samples in memory (``dataset_bytes``: what a
cluster launcher reserves for a job). Adding a dataset is adding an entry. (The loaders import
their module when called: each dataset module imports this one.)
"""

from dataclasses import dataclass
from typing import Callable, Optional

STAND_IN = "synthetic stand-in, not the Speech Commands dataset"


class DataError(Exception):
    """A missing, corrupt or unreadable dataset file: reported in one line, exit code 2."""


@dataclass(frozen=True)
class DatasetSpec:
    title: str  # how tables and figures name the data
    noise_axis: str  # the x label of accuracy-vs-noise plots
    load: Callable  # (DataConfig) -> the dataset
    prepare: Callable  # (DataConfig) -> its folder, fetched, generated or verified; no loading
    sample_bytes: int  # one sample as a job holds it (inputs, plus raw audio for GSC)
    sizes: tuple  # (training samples, test samples) of the whole dataset
    sources: tuple = ("real",)  # where the data may come from; the first is the real one
    source_titles: Optional[dict] = None  # title of each other source
    examples: Optional[Callable] = None  # (DataConfig) -> a few noisy test inputs to show


def _mnist(cfg):
    from data.mnist import MNISTDataset
    return MNISTDataset(cfg)


def _mnist_examples(cfg):
    from data.mnist import noisy_examples
    return noisy_examples(cfg)


def _prepare_mnist(cfg):
    from data.mnist import prepare_mnist
    return prepare_mnist(cfg.root, cfg.download)


def _speech_commands(cfg):
    from data.speech_commands import SpeechCommandsDataset
    return SpeechCommandsDataset(cfg)


def _prepare_speech_commands(cfg):
    from data.speech_commands import dataset_folder
    return dataset_folder(cfg, progress=False)


DATASETS = {
    "mnist": DatasetSpec("MNIST", "noise level (% of pixels overwritten)", _mnist,
                         _prepare_mnist, sample_bytes=28 * 28 * 4, sizes=(60_000, 10_000),
                         examples=_mnist_examples),
    "gsc": DatasetSpec("Google Speech Commands",
                       "noise level α (% uniform noise mixed into the waveform)",
                       _speech_commands, _prepare_speech_commands,
                       sample_bytes=32 * 32 * 4 + 16_000 * 2, sizes=(18_620, 2_552),
                       sources=("real", "synthetic"),
                       source_titles={"synthetic": f"Google Speech Commands ({STAND_IN})"}),
}


@dataclass
class DataConfig:
    name: str = "mnist"  # a key of DATASETS
    root: str = "datasets"  # where datasets are kept (git-ignored)
    source: str = "real"  # gsc: real | synthetic (the offline stand-in)
    train_limit: Optional[int] = None  # use only the first N training samples (smoke runs)
    test_limit: Optional[int] = None  # use only the first N test samples (smoke runs)
    validation: int = 0  # mnist: hold N training images out as a validation set (0: none)
    augment: bool = False  # gsc: the paper's waveform/STFT augmentation
    silence_fraction: float = 0.0  # gsc: all-zero clips added to training, as a fraction of it
    download: bool = True  # fetch the dataset when it is missing

    def check(self):
        if self.name not in DATASETS:
            raise ValueError(f"name: must be one of {', '.join(DATASETS)}, got {self.name!r}")
        sources = DATASETS[self.name].sources
        if self.source not in sources:
            raise ValueError(f"source: must be one of {', '.join(sources)} for {self.name}, "
                             f"got {self.source!r}")
        for key in ("train_limit", "test_limit"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key}: must be >= 1 or null, got {value}")
        if self.validation and self.name != "mnist":
            raise ValueError(f"validation: only for mnist ({self.name} has its own validation "
                             f"list), got {self.validation}")
        if not 0 <= self.validation < 60_000:
            raise ValueError(f"validation: must be in 0..59999, got {self.validation}")
        if not 0.0 <= self.silence_fraction < 1.0:
            raise ValueError(f"silence_fraction: must be in [0, 1), got {self.silence_fraction}")


def dataset_info(cfg):
    """What reports need to know of ``cfg``'s data, without loading it (JSON-safe)."""
    spec = DATASETS[cfg.name]
    title = (spec.source_titles or {}).get(cfg.source, spec.title)
    return {"name": cfg.name, "source": cfg.source, "title": title,
            "synthetic": cfg.source != spec.sources[0], "noise_axis": spec.noise_axis}


def load_dataset(cfg):
    """The dataset ``cfg`` (a DataConfig) names, loaded (fetched or generated when missing)."""
    return DATASETS[cfg.name].load(cfg)


def prepare_dataset(cfg):
    """Make ``cfg``'s dataset files ready (fetch, generate or verify them); return its folder.
    DataError when they are missing and ``cfg.download`` is false, or cannot be fetched."""
    return DATASETS[cfg.name].prepare(cfg)


TRAIN_COPIES, TEST_COPIES = 3, 12  # see dataset_bytes


def dataset_bytes(cfg):
    """About how many bytes ``cfg``'s dataset takes in a job's memory: each training sample
    ``TRAIN_COPIES`` times (stored, normalised, a batch's copy) and each test sample
    ``TEST_COPIES`` times (clean plus the paper's 11 noise levels, which a noise sweep keeps).
    Full MNIST: 0.94 GB; measured, a job's memory grew by 0.95 GB once its data and sweep were
    loaded."""
    spec = DATASETS[cfg.name]
    train, test = (min(limit or size, size) for limit, size in
                   zip((cfg.train_limit, cfg.test_limit), spec.sizes))
    return spec.sample_bytes * (TRAIN_COPIES * train + TEST_COPIES * test)


def noisy_examples(cfg):
    """A few test inputs at several noise levels, as arrays (see the dataset's ``examples``
    function), or None when the dataset has none to show."""
    examples = DATASETS[cfg.name].examples
    return None if examples is None else examples(cfg)
