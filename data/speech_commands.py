"""Google Speech Commands v0.01, the ten digit words, as a task (docs/paper_spec.md section 4).

Data: ``<root>/speech_commands_v0.01/`` (downloaded, verified and safely extracted when missing
and ``data.download``), or ``data.root`` itself when it is an extracted copy; with
``data.source: synthetic`` the offline stand-in ``<root>/speech_commands_synthetic/`` (made by
``data.synthetic_speech`` when missing). Splits: the dataset's own ``validation_list.txt`` and
``testing_list.txt`` restricted to the digit folders, train = every other digit clip (v0.01:
about 18.6k / 2,494 / 2,552). Every clip is checked: a missing, truncated, unreadable, non-16 kHz
or multi-channel wav stops the run with its path (DataError), never silently skipped.

Labels (12 outputs): 0 unknown (never occurs), 1 silence, 2..11 = zero..nine. Silence clips are
all-zero waveforms, ``int(silence_fraction * N)`` of them added to the N training clips only.
An epoch draws ``num_train`` clips with replacement, class-balanced (each clip weighted by 1 /
its class size), all randomness from the caller's torch.Generator.

Clips are stored as int16, padded with zeros to 16,000 samples (longer ones cropped), with their
real lengths; they and their clean log-mel features are cached per split in
``<dataset folder>.cache/`` and rebuilt when the files (names, sizes, mtimes) change.

Noise protocol: ``x' = (1 - a) x + a u``, ``u ~ U(-1, 1)`` i.i.d. per sample of the padded 1 s
waveform, then the same features.
"""

import hashlib
import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from data import STAND_IN, DataError
from data.download import download, one_process_at_a_time, safe_extract
from data.speech_augment import augmented_log_mel
from data.speech_features import CLIP_SAMPLES, SAMPLE_RATE, log_mel
from data.speech_words import DIGITS

LABELS = ("unknown", "silence") + DIGITS
SILENCE = LABELS.index("silence")
ARCHIVE_URL = "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz"
# The published SHA-256 of the archive (as torchaudio's SPEECHCOMMANDS records it).
ARCHIVE_SHA256 = "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"
REAL_FOLDER = "speech_commands_v0.01"
SYNTHETIC_FOLDER = "speech_commands_synthetic"
LIST_FILES = {"validation": "validation_list.txt", "test": "testing_list.txt"}
CACHE_VERSION = 1
BLOCK_CLIPS = 256  # training clips featurised together (augmentation is fastest in blocks)


def is_dataset(folder):
    return all((Path(folder) / name).is_file() for name in LIST_FILES.values())


def dataset_folder(cfg, progress=True):
    """The extracted dataset for ``cfg`` (a DataConfig), fetched or generated when missing (by
    one process at a time: the others wait for it, then use its copy)."""
    root = Path(cfg.root)
    if cfg.source == "real" and is_dataset(root):
        return root
    folder = root / (SYNTHETIC_FOLDER if cfg.source == "synthetic" else REAL_FOLDER)
    if is_dataset(folder):
        return folder
    with one_process_at_a_time(root / f".{folder.name}.lock"):
        if is_dataset(folder):  # made by another process while this one waited
            return folder
        if cfg.source == "synthetic":
            from data.synthetic_speech import generate
            generate(folder, progress=progress)
        else:
            fetch_real_dataset(folder, cfg.download, progress)
    return folder


def fetch_real_dataset(folder, allowed, progress=True):
    """Download, verify and safely extract v0.01 into ``folder`` (if ``allowed``)."""
    if folder.exists():
        raise DataError(f"{folder}: exists but lacks validation_list.txt / testing_list.txt; "
                        f"delete the folder to extract the dataset again")
    if not allowed:
        raise DataError(f"{folder}: not found (set data.download: true to fetch {ARCHIVE_URL}, "
                        f"or point data.root at an extracted copy)")
    archive = download(ARCHIVE_URL, folder.parent / f"{REAL_FOLDER}.tar.gz", ARCHIVE_SHA256,
                       progress)
    safe_extract(archive, folder, progress)
    if not is_dataset(folder):
        raise DataError(f"{archive}: extracted, but it holds no validation/testing lists")


def read_list(folder, name):
    """The relative paths (``word/file.wav``) listed in ``folder/name``."""
    path = Path(folder) / name
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read the split list ({e.strerror})") from e
    return {line.strip() for line in lines if line.strip()}


def split_files(folder, words=DIGITS):
    """{'train', 'validation', 'test'}: sorted ``word/file.wav`` paths of ``words``' clips.

    validation and test are the list files' entries in those word folders; every listed clip
    must exist; train is every other wav in the word folders.
    """
    folder = Path(folder)
    clips = set()
    for word in words:
        if not (folder / word).is_dir():
            raise DataError(f"{folder / word}: word folder missing")
        clips.update(f"{word}/{p.name}" for p in (folder / word).glob("*.wav"))
    if not clips:
        raise DataError(f"{folder}: no wav files in the word folders ({', '.join(words)})")
    splits = {}
    for split, name in LIST_FILES.items():
        listed = {p for p in read_list(folder, name) if p.split("/")[0] in words}
        missing = sorted(listed - clips)
        if missing:
            raise DataError(f"{folder / missing[0]}: listed in {name} but missing "
                            f"({len(missing)} listed clips missing)")
        splits[split] = sorted(listed)
    held_out = set(splits["validation"]) | set(splits["test"])
    return {"train": sorted(clips - held_out), **splits}


def label_of(relative_path):
    """2 + digit index for ``word/file.wav`` (0 unknown and 1 silence are not file labels)."""
    return LABELS.index(relative_path.split("/")[0])


def limit_files(files, limit):
    """At most ``limit`` of ``files``: a fixed pseudo-random subset (by SHA-1 of the path).

    Taking the first N sorted paths would keep only the first word; the hash order mixes
    words and speakers and does not depend on the run's seed.
    """
    if limit is None or limit >= len(files):
        return list(files)
    by_hash = sorted(files, key=lambda p: hashlib.sha1(p.encode()).hexdigest())
    return sorted(by_hash[:limit])


def check_wav_bytes(path, data):
    """Raise DataError unless ``data`` is a RIFF/WAVE file whose data chunk is all present.

    libsndfile quietly reads a truncated file as a shorter clip, so the header is checked here.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{path}: not a WAV file")
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] == b"data":
            if pos + 8 + size > len(data):
                raise DataError(f"{path}: truncated (header promises {size} bytes of samples, "
                                f"the file holds {len(data) - pos - 8})")
            return
        pos += 8 + size + (size & 1)
    raise DataError(f"{path}: truncated or corrupt (no data chunk)")


def read_clip(path):
    """The int16 samples of a 16 kHz mono wav, cropped to 16,000; DataError on any problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: unreadable ({e.strerror})") from e
    check_wav_bytes(path, data)
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise DataError(f"{path}: unreadable wav ({e})") from e
    if rate != SAMPLE_RATE or samples.shape[1] != 1 or len(samples) == 0:
        raise DataError(f"{path}: expected 16 kHz mono samples, got {rate} Hz, "
                        f"{samples.shape[1]} channel(s), {len(samples)} samples")
    return samples[:CLIP_SAMPLES, 0]


def read_clips(folder, files, progress=True):
    """(int16 (N, 16000) zero-padded clips, int64 (N,) real lengths) of ``files``."""
    waves = np.zeros((len(files), CLIP_SAMPLES), dtype=np.int16)
    lengths = np.zeros(len(files), dtype=np.int64)
    for i, name in enumerate(tqdm(files, disable=not progress, desc="read wavs", unit="clip",
                                  leave=False)):
        clip = read_clip(Path(folder) / name)
        waves[i, :len(clip)] = clip
        lengths[i] = len(clip)
    return torch.from_numpy(waves), torch.from_numpy(lengths)


def to_float(waves):
    """int16 samples -> float32 in [-1, 1) (x / 32768, as soundfile reads PCM_16)."""
    return waves.to(torch.float32) / 32768.0


def fingerprint(folder, files):
    """SHA-1 over the cache version and each file's name, size and modification time."""
    digest = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for name in files:
        stat = (Path(folder) / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_split(folder, split, files, progress=True):
    """{'waves', 'lengths', 'labels', 'features'} of ``files``, from the cache when valid."""
    cache = Path(folder).parent / f"{Path(folder).name}.cache" / f"{split}-{len(files)}.pt"
    key = fingerprint(folder, files)
    data = _read_cache(cache)
    if data is not None and data.get("fingerprint") == key:
        return data
    waves, lengths = read_clips(folder, files, progress)
    data = {"fingerprint": key, "waves": waves, "lengths": lengths,
            "labels": torch.tensor([label_of(f) for f in files], dtype=torch.int64),
            "features": log_mel(to_float(waves), progress=progress)}
    _write_cache(cache, data)
    return data


def _read_cache(path):
    """The cached dict, or None when there is none or it cannot be read (it is then rebuilt)."""
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        print(f"warning: {path}: unreadable feature cache ({e}); rebuilding it", file=sys.stderr)
        return None


def _write_cache(path, data):
    """Write atomically; a read-only dataset location only costs the recomputation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(data, tmp)
        os.replace(tmp, path)
    except OSError as e:
        print(f"warning: {path}: cannot write the feature cache ({e})", file=sys.stderr)


def add_waveform_noise(waves, level, generator=None):
    """(1 - level) * waves + level * u, with u ~ U(-1, 1) i.i.d. per sample (from generator)."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must be in [0, 1], got {level}")
    uniform = torch.rand(waves.shape, generator=generator) * 2.0 - 1.0
    return (1.0 - level) * waves + level * uniform


def class_balanced_draws(labels, num_draws, generator):
    """``num_draws`` indices into ``labels``, with replacement, each class equally likely."""
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].to(torch.float64)
    return torch.multinomial(weights, num_draws, replacement=True, generator=generator)


class SpeechCommandsDataset:
    """The digit words as 1x32x32 log-mel inputs with 12 outputs (see module doc)."""

    input_shape = (1, 32, 32)
    num_classes = len(LABELS)

    def __init__(self, cfg, progress=True):
        """Load (fetching or generating if needed) and featurise; prints the split sizes."""
        self.synthetic = cfg.source == "synthetic"
        folder = dataset_folder(cfg, progress)
        files = split_files(folder)
        limits = {"train": cfg.train_limit, "validation": cfg.test_limit, "test": cfg.test_limit}
        self.splits = {name: load_split(folder, name, limit_files(files[name], limits[name]),
                                        progress) for name in files}
        self.num_clips = len(self.splits["train"]["labels"])
        self.num_silence = int(cfg.silence_fraction * self.num_clips)
        self.num_train = self.num_clips + self.num_silence
        self.train_labels = torch.cat([self.splits["train"]["labels"],
                                       torch.full((self.num_silence,), SILENCE)])
        silence = log_mel(torch.zeros(self.num_silence, CLIP_SAMPLES))
        self.train_features = torch.cat([self.splits["train"]["features"], silence])
        self.augment = cfg.augment
        print(self.describe())

    def describe(self):
        """One line: which data (real or the labelled stand-in) and the split sizes."""
        name = STAND_IN if self.synthetic else "Speech Commands v0.01"
        sizes = {k: len(v["labels"]) for k, v in self.splits.items()}
        return (f"{name}, digits: {sizes['train']:,} training clips (+{self.num_silence:,} "
                f"silence), {sizes['validation']:,} validation, {sizes['test']:,} test"
                f"{', augmented' if self.augment else ''}")

    def train_batches(self, batch_size, generator):
        """One epoch: ``num_train`` class-balanced draws with replacement, in batches.

        Clips are featurised (and augmented) in blocks of about 256; a final batch of one
        clip is dropped (BatchNorm cannot train on it).
        """
        order = class_balanced_draws(self.train_labels, self.num_train, generator)
        block = batch_size * max(1, BLOCK_CLIPS // batch_size)
        for start in range(0, len(order), block):
            idx = order[start:start + block]
            x, y = self._train_inputs(idx, generator), self.train_labels[idx]
            for b in range(0, len(idx), batch_size):
                if len(idx) - b == 1 and batch_size > 1:
                    return
                yield x[b:b + batch_size], y[b:b + batch_size]

    def _train_inputs(self, idx, generator):
        """(len(idx), 1, 32, 32) features of training draws ``idx`` (silence past num_clips)."""
        if not self.augment:
            return self.train_features[idx]
        train = self.splits["train"]
        is_clip = idx < self.num_clips
        clip = idx.clamp(max=self.num_clips - 1)
        waves = to_float(train["waves"][clip]) * is_clip[:, None]  # silence: all zeros
        lengths = torch.where(is_clip, train["lengths"][clip], CLIP_SAMPLES)
        return augmented_log_mel(waves, lengths, generator)

    def validation_set(self):
        return self.splits["validation"]["features"], self.splits["validation"]["labels"]

    def test_set(self):
        return self.splits["test"]["features"], self.splits["test"]["labels"]

    def noisy_test_set(self, level, generator):
        """Test features after the waveform noise blend at ``level`` (drawn from generator)."""
        test = self.splits["test"]
        noisy = add_waveform_noise(to_float(test["waves"]), level, generator)
        return log_mel(noisy), test["labels"]
