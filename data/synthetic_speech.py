"""An offline stand-in for Speech Commands v0.01, synthesised with espeak-ng and flite.

NOT the Speech Commands dataset: everything made from it must say "synthetic stand-in".

The folder has the real dataset's layout: ``<word>/<speaker>_nohash_<n>.wav`` (1 s, 16 kHz,
mono, 16-bit) for all 30 words, ``_background_noise_/*.wav``, ``validation_list.txt`` and
``testing_list.txt`` (the official SHA-1 rule on the speaker id, so every speaker lies in one
split) and a README.txt. A synthetic speaker is an engine and voice (espeak-ng: 8 English
accents x voice variants; flite: 4 voices) with its own speaking rate, pitch, microphone
colour (a one-pole tilt filter) and background noise. Each speaker says every digit
``DIGIT_REPEATS`` times and every other word once, with per-utterance jitter of rate and pitch.

Each utterance: synthesise, resample to 16 kHz, trim leading/trailing silence (frames 35 dB
below the loudest), filter, scale to a random peak level, place at a random offset in a 1 s
frame, then add a random stretch of the speaker's background noise at a random SNR re the
word's RMS (the speaker's 10..40 dB, +-5 dB per utterance), so clips are never digitally silent
around the word. Everything is seeded, so a regeneration gives the same folder.
"""

import hashlib
import io
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import lfilter, resample_poly
from tqdm.auto import tqdm

from data import STAND_IN, DataError
from data.speech_words import DIGITS, WORDS

SAMPLE_RATE = 16_000
NUM_SPEAKERS = 150
DIGIT_REPEATS = 2
SEED = 2019
TOOLS = ("espeak-ng", "flite")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "adam", "Andy", "Annie", "aunty", "benjamin",
                   "caleb", "david", "ed", "edward", "john", "linda", "max", "paul", "quincy",
                   "rob", "robert", "steph", "travis", "victor", "grandma", "grandpa")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
NOISE_SECONDS = 60
NOISE_KINDS = ("white_noise", "pink_noise", "brown_noise", "hum")
SNR_DB = (10.0, 40.0)
PEAK = (0.05, 0.9)
TRIM_DB = 35.0


def official_split(filename):
    """'validation', 'test' or 'train' by the dataset's rule (its README, TF's ``which_set``).

    Drop everything from ``_nohash_`` on, SHA-1 the rest, take the hex digest modulo 2**27 as a
    percentage of 2**27 - 1: below 10 -> validation, below 20 -> test, else train.
    """
    speaker = Path(filename).name.split("_nohash_")[0]
    value = int(hashlib.sha1(speaker.encode()).hexdigest(), 16)
    percent = (value % 2 ** 27) * (100.0 / (2 ** 27 - 1))
    return "validation" if percent < 10 else "test" if percent < 20 else "train"


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a voice and fixed habits (see module doc)."""
    id: str  # 8 hex digits, like the real dataset's speaker hashes
    engine: str  # espeak-ng | flite
    voice: str  # espeak-ng: accent+variant; flite: voice name
    rate: float  # espeak-ng: words per minute; flite: duration stretch (> 1 is slower)
    pitch: float  # espeak-ng: pitch 0..99; flite: mean F0 in Hz
    size: float  # resampling factor > 1 raises pitch and formants and speeds up (a smaller head)
    tilt: tuple  # (b, a) of the microphone filter (1 - b z^-1) / (1 - a z^-1)
    noise: str  # the background noise behind this speaker
    snr_db: float  # typical speech-to-noise ratio


@dataclass(frozen=True)
class Utterance:
    speaker: Speaker
    word: str
    take: int  # the n of ``_nohash_<n>``
    seed: tuple  # seeds this utterance's jitter, placement and noise

    @property
    def path(self):
        return f"{self.word}/{self.speaker.id}_nohash_{self.take}.wav"


def require_tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise DataError(f"the synthetic stand-in needs {' and '.join(missing)}: apt-get update && "
                        f"apt-get install -y --no-install-recommends espeak-ng flite")


def make_speaker(rng, speaker_id):
    """A random voice: 3 in 4 speakers are espeak-ng (many accents and variants), 1 in 4 flite."""
    if rng.random() < 0.75:
        voice = f"{rng.choice(ESPEAK_ACCENTS)}+{rng.choice(ESPEAK_VARIANTS)}"
        engine, rate, pitch = "espeak-ng", rng.uniform(120, 210), rng.uniform(20, 80)
    else:
        voice = str(rng.choice(FLITE_VOICES))
        engine, rate, pitch = "flite", rng.uniform(0.8, 1.3), rng.uniform(90, 200)
    tilt = (rng.uniform(0.0, 0.9), rng.uniform(0.0, 0.7))
    return Speaker(speaker_id, engine, voice, rate, pitch, rng.uniform(0.88, 1.12), tilt,
                   str(rng.choice(NOISE_KINDS)), rng.uniform(*SNR_DB))


def make_speakers(num_speakers, rng):
    ids = []
    while len(ids) < num_speakers:
        speaker_id = f"{int(rng.integers(2 ** 32)):08x}"
        if speaker_id not in ids:
            ids.append(speaker_id)
    return [make_speaker(rng, speaker_id) for speaker_id in ids]


def plan_utterances(speakers, words, digit_repeats):
    """Every speaker says each digit ``digit_repeats`` times and every other word once."""
    return [Utterance(speaker, word, take, (SEED, i, j, take))
            for i, speaker in enumerate(speakers) for j, word in enumerate(words)
            for take in range(digit_repeats if word in DIGITS else 1)]


def synthesis_command(speaker, word, rng):
    """The engine's command line for one utterance, with jittered rate and pitch."""
    rate, pitch = speaker.rate * rng.uniform(0.9, 1.1), speaker.pitch * rng.uniform(0.92, 1.08)
    if speaker.engine == "espeak-ng":
        return ["espeak-ng", "-v", speaker.voice, "-s", str(round(rate)),
                "-p", str(round(min(pitch, 99))), "--stdout", word]
    return ["flite", "-voice", speaker.voice, "--setf", f"duration_stretch={rate:.3f}",
            "--setf", f"int_f0_target_mean={pitch:.1f}", "-t", word, "-o", "/dev/stdout"]


def synthesize(speaker, word, rng):
    """The engine's float64 output resampled to 16 kHz / (speaker size x U(0.97, 1.03))."""
    command = synthesis_command(speaker, word, rng)
    result = subprocess.run(command, capture_output=True)
    if result.returncode or len(result.stdout) <= 44:
        raise DataError(f"{' '.join(command)}: failed ({result.stderr.decode()[-200:]})")
    samples, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float64")
    ratio = Fraction(SAMPLE_RATE / (speaker.size * rng.uniform(0.97, 1.03)) / rate)
    ratio = ratio.limit_denominator(200)
    return resample_poly(samples, ratio.numerator, ratio.denominator)


def trim_silence(samples, frame=160, floor_db=TRIM_DB):
    """The samples from the first to the last 10 ms frame within ``floor_db`` of the loudest."""
    frames = samples[:len(samples) // frame * frame].reshape(-1, frame)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-floor_db / 20))
    return samples[loud[0] * frame:(loud[-1] + 1) * frame]


def render(utterance, noises):
    """The utterance as a 1 s float clip: trimmed, filtered, levelled, placed, noise added."""
    rng = np.random.default_rng(utterance.seed)
    speaker = utterance.speaker
    word = trim_silence(synthesize(speaker, utterance.word, rng))[:SAMPLE_RATE]
    b, a = speaker.tilt
    word = lfilter([1.0, -b], [1.0, -a], word)
    word *= np.exp(rng.uniform(*np.log(PEAK))) / np.abs(word).max()
    clip = np.zeros(SAMPLE_RATE)
    start = rng.integers(SAMPLE_RATE - len(word) + 1)
    clip[start:start + len(word)] = word
    noise = noises[speaker.noise]
    offset = rng.integers(len(noise) - SAMPLE_RATE)
    snr_db = speaker.snr_db + rng.uniform(-5.0, 5.0)
    gain = np.sqrt(np.mean(word ** 2)) * 10 ** (-snr_db / 20) / np.sqrt(np.mean(noise ** 2))
    return np.clip(clip + gain * noise[offset:offset + SAMPLE_RATE], -1.0, 1.0)


def background_noises(rng, seconds=NOISE_SECONDS):
    """{kind: float samples}: white, pink (1/f power), brown (1/f^2) noise and mains hum."""
    n = seconds * SAMPLE_RATE
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0)
    t = np.arange(n) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 8))
    noises = {"white_noise": rng.uniform(-1.0, 1.0, n),
              "pink_noise": np.fft.irfft(spectrum / np.sqrt(freqs), n),
              "brown_noise": np.fft.irfft(spectrum / freqs, n),
              "hum": hum + 0.05 * rng.standard_normal(n)}
    return {kind: 0.5 * x / np.abs(x).max() for kind, x in noises.items()}


def write_wav(path, samples):
    soundfile.write(path, np.round(samples * 32767).astype(np.int16), SAMPLE_RATE,
                    subtype="PCM_16")


def write_lists(folder, paths):
    """validation_list.txt and testing_list.txt by the official rule, sorted like the real ones."""
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        chosen = sorted(p for p in paths if official_split(p) == split)
        (Path(folder) / name).write_text("".join(f"{p}\n" for p in chosen))


def tool_version(tool):
    """One line naming the tool's version, e.g. 'eSpeak NG text-to-speech: 1.51'."""
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()] or [tool]
    line = next((x for x in lines if "version" in x or "text-to-speech" in x), lines[0])
    return line.split("Data at")[0].strip()


def write_readme(folder, speakers, utterances):
    """README.txt: what this folder is (and is not), how it was made, its split sizes."""
    def counts(items):
        splits = [official_split(u.path) for u in items]
        return ", ".join(f"{s} {splits.count(s):,}" for s in ("train", "validation", "test"))

    engines = ", ".join(f"{sum(s.engine == e for s in speakers)} {e}" for e in TOOLS)
    lines = [
        STAND_IN.upper(), "",
        f"This folder is a {STAND_IN}.",
        "It imitates the layout of speech_commands_v0.01 (word folders of 1 s, 16 kHz, mono,",
        "16-bit wavs; _background_noise_/; validation_list.txt and testing_list.txt by the",
        "dataset's SHA-1 rule on the speaker id) so that the pipeline can run offline. Results",
        "obtained on it say nothing about the paper's numbers and must be labelled",
        f'"{STAND_IN}".', "",
        f"Made by data/synthetic_speech.py (seed {SEED}) with:",
        f"  {tool_version('espeak-ng')}", f"  {tool_version('flite')}",
        f"Speakers: {len(speakers)} ({engines}).",
        f"Clips: {len(utterances):,} of {len({u.word for u in utterances})} words; each digit "
        f"{max(u.take for u in utterances) + 1} times per speaker, other words once.",
        f"Background noise (white, pink, brown, hum) mixed in at {SNR_DB[0] - 5:.0f}.."
        f"{SNR_DB[1] + 5:.0f} dB SNR re the word.", "",
        f"Clips per split, all words: {counts(utterances)}.",
        f"Clips per split, digits:    {counts([u for u in utterances if u.word in DIGITS])}.",
    ]
    (Path(folder) / "README.txt").write_text("\n".join(lines) + "\n")


def generate(folder, num_speakers=NUM_SPEAKERS, words=WORDS, digit_repeats=DIGIT_REPEATS,
             progress=True):
    """Write the stand-in into ``folder`` (built in ``<folder>.partial``, renamed when done)."""
    require_tools()
    folder, start = Path(folder), time.perf_counter()
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    noises = background_noises(rng)
    utterances = plan_utterances(make_speakers(num_speakers, rng), words, digit_repeats)
    for sub in ("_background_noise_",) + tuple(words):
        (partial / sub).mkdir(parents=True)
    for kind, samples in noises.items():
        write_wav(partial / "_background_noise_" / f"{kind}.wav", samples)

    def write(utterance):
        write_wav(partial / utterance.path, render(utterance, noises))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(tqdm(pool.map(write, utterances), total=len(utterances), disable=not progress,
                  desc="synthesise stand-in", unit="clip"))
    write_lists(partial, [u.path for u in utterances])
    write_readme(partial, sorted({u.speaker for u in utterances}, key=lambda s: s.id), utterances)
    os.replace(partial, folder)
    print(f"wrote {len(utterances):,} clips to {folder} in {time.perf_counter() - start:.0f} s "
          f"({STAND_IN})")
    return folder
