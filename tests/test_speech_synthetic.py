"""The synthetic stand-in: the official split rule, and (with espeak-ng + flite) the generator."""

import functools
import hashlib
import re
import shutil

import numpy as np
import pytest
import soundfile
import torch

import data.synthetic_speech as synthetic
from data import DataConfig, DataError
from data import STAND_IN
from data.speech_commands import SpeechCommandsDataset, read_list
from data.speech_words import DIGITS
from data.synthetic_speech import generate, official_split

needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in synthetic.TOOLS),
    reason="needs espeak-ng and flite: apt-get install -y --no-install-recommends espeak-ng flite")


def tensorflow_which_set(filename):
    """The rule as TensorFlow's speech_commands/input_data.py states it, for comparison."""
    hash_name = re.sub(r"_nohash_.*$", "", filename.split("/")[-1])
    hashed = int(hashlib.sha1(hash_name.encode()).hexdigest(), 16)
    percentage = (hashed % (2 ** 27 - 1 + 1)) * (100.0 / (2 ** 27 - 1))
    return "validation" if percentage < 10 else "test" if percentage < 20 else "train"


def test_official_split_keeps_speakers_together_and_holds_out_a_tenth_each():
    rng = np.random.default_rng(0)
    speakers = [f"{int(x):08x}" for x in rng.integers(2 ** 32, size=20_000)]
    splits = [official_split(f"zero/{s}_nohash_0.wav") for s in speakers]
    assert abs(splits.count("validation") / 20_000 - 0.1) < 0.01
    assert abs(splits.count("test") / 20_000 - 0.1) < 0.01
    for speaker, split in zip(speakers[:200], splits):
        assert official_split(f"nine/{speaker}_nohash_3.wav") == split
        assert tensorflow_which_set(f"nine/{speaker}_nohash_3.wav") == split


def test_missing_tools_are_reported_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic.shutil, "which", lambda tool: None)
    with pytest.raises(DataError, match="apt-get install .*espeak-ng flite"):
        generate(tmp_path / "stand_in", progress=False)
    assert not (tmp_path / "stand_in").exists()


@needs_tools
def test_generated_folder_has_the_real_layout_and_says_what_it_is(tmp_path):
    folder = generate(tmp_path / "stand_in", num_speakers=4, words=("zero", "one", "bed"),
                      progress=False)
    assert STAND_IN in (folder / "README.txt").read_text()
    clips = sorted(f"{p.parent.name}/{p.name}" for p in folder.glob("*/*.wav")
                   if p.parent.name != "_background_noise_")
    assert len(clips) == 4 * (2 + 2 + 1)  # digits twice per speaker, other words once
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        assert read_list(folder, name) == {c for c in clips if official_split(c) == split}
    assert len(list((folder / "_background_noise_").glob("*.wav"))) == 4
    for clip in clips:
        samples, rate = soundfile.read(folder / clip, dtype="float64")
        info = soundfile.info(folder / clip)
        assert (rate, samples.shape, info.subtype) == (16_000, (16_000,), "PCM_16")
        edges = np.concatenate([samples[:160], samples[-160:]])
        assert np.count_nonzero(edges) > 100  # background noise, not digital silence
        loudest = np.sqrt(np.convolve(samples ** 2, np.ones(800) / 800, "valid")).max()
        assert loudest > 3 * np.sqrt(np.mean(edges ** 2))  # a word stands out of the noise


@needs_tools
def test_generation_is_reproducible(tmp_path):
    first = generate(tmp_path / "a", num_speakers=2, words=("two",), progress=False)
    second = generate(tmp_path / "b", num_speakers=2, words=("two",), progress=False)
    for path in sorted(first.rglob("*.wav")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()


@needs_tools
def test_synthetic_source_generates_on_demand_and_labels_the_task(tmp_path, monkeypatch):
    small = functools.partial(generate, num_speakers=6, words=DIGITS)
    monkeypatch.setattr(synthetic, "generate", small)
    cfg = DataConfig(name="gsc", root=str(tmp_path), source="synthetic", silence_fraction=0.1)
    task = SpeechCommandsDataset(cfg, progress=False)
    assert (tmp_path / "speech_commands_synthetic" / "README.txt").is_file()
    assert task.describe().startswith(STAND_IN)
    x, y = next(task.train_batches(8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 1, 32, 32) and y.min() >= 1
