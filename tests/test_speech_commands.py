"""Speech Commands task: splits from the list files, wav checks, noise, caching and batches.

Every dataset here is a tiny folder in the real layout written with soundfile (no espeak).
"""

import hashlib
import io
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile
import torch

import data.speech_commands as gsc
from data import DataConfig, DataError
from data.speech_words import DIGITS
from data.speech_commands import (SILENCE, SpeechCommandsDataset, add_waveform_noise,
                                  class_balanced_draws, load_split, log_mel, read_clip,
                                  split_files)
from tests.helpers import TESTING, VALIDATION, Server, make_dataset, write_clip

@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "gsc")


def config(folder, **overrides):
    return DataConfig(**{"name": "gsc", "root": str(folder), "download": False, **overrides})


def test_splits_come_from_the_list_files_restricted_to_digits(dataset):
    splits = split_files(dataset)
    assert splits["validation"] == sorted(VALIDATION[:2])
    assert splits["test"] == sorted(TESTING[:2])
    train = set(splits["train"])
    assert len(train) == 10 * 6 + 4 - 4  # every digit clip but the 4 listed ones
    assert not train & (set(VALIDATION) | set(TESTING))
    assert {p.split("/")[0] for p in train} == set(DIGITS)
    assert "two/s2_nohash_0.wav" in train  # only the listed take of speaker s2 is held out


def test_a_listed_but_missing_clip_is_named(dataset):
    (dataset / "one" / "s1_nohash_0.wav").unlink()
    with pytest.raises(DataError, match="one/s1_nohash_0.wav: listed in validation_list.txt"):
        split_files(dataset)


def test_missing_list_file_is_reported(dataset):
    (dataset / "testing_list.txt").unlink()
    with pytest.raises(DataError, match="testing_list.txt"):
        split_files(dataset)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:9000]), "truncated"),
    (lambda p: write_clip(p, 1, rate=22_050), "expected 16 kHz mono"),
    (lambda p: write_clip(p, 1, channels=2), "expected 16 kHz mono"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk"), "no data chunk"),
    (lambda p: p.write_bytes(b"not a wav at all"), "not a WAV file"),
], ids=["truncated", "44k", "stereo", "no-data", "garbage"])
def test_a_corrupt_wav_stops_the_run_with_its_path(dataset, damage, message):
    bad = dataset / "three" / "t1_nohash_0.wav"
    damage(bad)
    with pytest.raises(DataError, match=message) as error:
        SpeechCommandsDataset(config(dataset), progress=False)
    assert str(bad) in str(error.value)


def test_read_clip_returns_the_int16_samples(tmp_path):
    write_clip(tmp_path / "a.wav", 3, length=12_345)
    samples = read_clip(tmp_path / "a.wav")
    expected, _ = soundfile.read(tmp_path / "a.wav", dtype="int16")
    assert samples.dtype == np.int16 and np.array_equal(samples, expected)


def test_noise_blend_is_the_stated_convex_mix():
    waves = torch.linspace(-1, 1, 16_000).repeat(3, 1)
    assert torch.equal(add_waveform_noise(waves, 0.0, torch.Generator().manual_seed(0)), waves)
    noise = add_waveform_noise(waves, 1.0, torch.Generator().manual_seed(0))
    assert noise.min() >= -1 and noise.max() <= 1
    assert abs(noise.mean()) < 0.01 and abs(noise.var() - 1 / 3) < 0.01  # U(-1, 1)
    level = 0.35
    noisy = add_waveform_noise(waves, level, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy, (1 - level) * waves + level * noise)
    assert torch.equal(noisy, add_waveform_noise(waves, level, torch.Generator().manual_seed(0)))


def test_class_balanced_draws_are_uniform_over_present_classes():
    labels = torch.tensor([2] * 1000 + [3] * 10 + [SILENCE] * 100)
    draws = class_balanced_draws(labels, 60_000, torch.Generator().manual_seed(0))
    share = torch.bincount(labels[draws], minlength=12).double() / len(draws)
    assert share[[0] + list(range(4, 12))].sum() == 0
    torch.testing.assert_close(share[[1, 2, 3]], torch.full((3,), 1 / 3, dtype=torch.float64),
                               atol=0.01, rtol=0)
    assert len(set(draws[labels[draws] == 3].tolist())) == 10  # with replacement


def test_task_has_the_contracted_shapes_sizes_and_clean_features(dataset):
    task = SpeechCommandsDataset(config(dataset, silence_fraction=0.1), progress=False)
    assert task.input_shape == (1, 32, 32) and task.num_classes == 12
    assert task.num_train == 60 + int(0.1 * 60)
    assert "60 training clips (+6 silence), 2 validation, 2 test" in task.describe()
    x, y = task.test_set()
    assert x.shape == (2, 1, 32, 32) and y.tolist() == [4, 2]  # two, zero (sorted paths)
    clip = soundfile.read(dataset / "two" / "s2_nohash_1.wav", dtype="float32")[0]
    padded = torch.zeros(1, 16_000)
    padded[0, :len(clip)] = torch.from_numpy(clip)
    torch.testing.assert_close(x[:1], log_mel(padded))
    assert task.validation_set()[1].tolist() == [3, 2]  # one, zero


def test_an_epoch_is_balanced_with_silence_and_drops_a_lone_last_clip(dataset):
    task = SpeechCommandsDataset(config(dataset, silence_fraction=0.1), progress=False)
    counts, batches = torch.zeros(12), []
    for epoch in range(20):
        batches = list(task.train_batches(5, torch.Generator().manual_seed(epoch)))
        for x, y in batches:
            assert x.shape == (len(y), 1, 32, 32) and x.dtype == torch.float32
            assert y.dtype == torch.int64 and y.min() >= 1
            assert torch.all(x[y == SILENCE] == 0.0)  # silence: all-zero clips -> 0 dB
            counts += torch.bincount(y, minlength=12)
    assert [len(y) for _, y in batches] == [5] * 13  # 66 draws: the lone 66th is dropped
    assert counts[0] == 0 and counts[1:].min() > 0.6 * counts[1:].mean()
    assert counts.sum() == 20 * 65


def test_augmented_epochs_are_reproducible_from_the_generator(dataset):
    task = SpeechCommandsDataset(config(dataset, augment=True, silence_fraction=0.1),
                              progress=False)
    def epoch(seed):
        return list(task.train_batches(16, torch.Generator().manual_seed(seed)))

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert [len(y) for _, y in first] == [16, 16, 16, 16, 2]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
    clean = SpeechCommandsDataset(config(dataset, silence_fraction=0.1), progress=False)
    plain = list(clean.train_batches(16, torch.Generator().manual_seed(0)))
    assert torch.equal(plain[0][1], first[0][1])  # same draws, different (augmented) inputs
    assert not torch.equal(plain[0][0], first[0][0])


def test_noisy_test_set_blends_the_padded_waveforms(dataset):
    task = SpeechCommandsDataset(config(dataset), progress=False)
    x, y = task.noisy_test_set(0.3, torch.Generator().manual_seed(5))
    waves = gsc.to_float(task.splits["test"]["waves"])
    expected = log_mel(add_waveform_noise(waves, 0.3, torch.Generator().manual_seed(5)))
    assert torch.equal(x, expected) and torch.equal(y, task.test_set()[1])
    assert (x - task.test_set()[0]).abs().max() > 1.0


def test_limits_pick_a_mixed_subset(dataset):
    task = SpeechCommandsDataset(config(dataset, train_limit=20, test_limit=1), progress=False)
    labels = task.splits["train"]["labels"]
    assert len(labels) == 20 and len(set(labels.tolist())) >= 6
    assert len(task.test_set()[1]) == 1 and len(task.validation_set()[1]) == 1


def test_features_are_cached_and_rebuilt_when_a_file_changes(dataset, monkeypatch):
    files = split_files(dataset)["test"]
    first = load_split(dataset, "test", files, progress=False)
    assert (dataset.parent / "gsc.cache" / "test-2.pt").is_file()

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(gsc, "read_clips", no_reading)
    assert torch.equal(load_split(dataset, "test", files, progress=False)["features"],
                       first["features"])
    write_clip(dataset / files[0], 99)
    with pytest.raises(AssertionError, match="cache should have been used"):
        load_split(dataset, "test", files, progress=False)


def test_missing_real_dataset_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="data.download: true"):
        SpeechCommandsDataset(config(tmp_path), progress=False)


def test_a_corrupt_cache_is_rebuilt(dataset):
    files = split_files(dataset)["test"]
    first = load_split(dataset, "test", files, progress=False)
    cache = dataset.parent / "gsc.cache" / "test-2.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    assert torch.equal(load_split(dataset, "test", files, progress=False)["features"],
                       first["features"])
    assert torch.load(cache, weights_only=True)["fingerprint"] == first["fingerprint"]


def test_real_source_downloads_verifies_and_extracts_when_missing(tmp_path, monkeypatch):
    source = make_dataset(tmp_path / "upstream", train_per_digit=1, extra_zeros=0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname=".")  # the official archive has no top-level folder
    archive = buffer.getvalue()
    monkeypatch.setattr(gsc, "ARCHIVE_SHA256", hashlib.sha256(archive).hexdigest())
    with Server(archive) as server:
        monkeypatch.setattr(gsc, "ARCHIVE_URL", server.url)
        task = SpeechCommandsDataset(config(tmp_path / "root", download=True), progress=False)
    folder = tmp_path / "root" / "speech_commands_v0.01"
    assert (folder / "zero" / "t0_nohash_0.wav").is_file()
    assert (tmp_path / "root" / "speech_commands_v0.01.tar.gz.sha256").is_file()
    assert task.num_clips == 10 * 4 - 4 and len(task.test_set()[1]) == 2


def test_jobs_that_need_the_missing_dataset_at_once_fetch_it_once(tmp_path, monkeypatch):
    """dataset_folder takes a lock around a fetch: the other callers wait, then use its copy."""
    fetches = []

    def fetch(folder, allowed, progress):
        fetches.append(folder)
        time.sleep(0.3)  # long enough for every other caller to arrive meanwhile
        make_dataset(folder)

    monkeypatch.setattr(gsc, "fetch_real_dataset", fetch)
    cfg = config(tmp_path, download=True)
    with ThreadPoolExecutor(3) as pool:
        folders = list(pool.map(lambda _: gsc.dataset_folder(cfg, progress=False), range(3)))
    assert len(fetches) == 1 and folders == [tmp_path / gsc.REAL_FOLDER] * 3
