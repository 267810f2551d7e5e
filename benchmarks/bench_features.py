"""Log-mel features for 10,000 clips: batched torch (``log_mel``) against per-clip librosa.

Side by side in one process: each round times ``log_mel`` on all clips in one call and
librosa (melspectrogram + power_to_db, the reference) clip by clip on the next slice of
1 / rounds of them, so librosa sees every clip once and machine noise hits both alike. Prints
the median per-clip times, the ratio (target >= 5), the worst dB difference, and the
augmented-feature rate that training pays per clip. Clips come from the synthetic stand-in
when it exists (``datasets/speech_commands_synthetic``), else speech-like test signals.

    python benchmarks/bench_features.py [--clips 10000] [--rounds 5] [--threads N]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from data.speech_augment import augmented_log_mel  # noqa: E402
from data.speech_commands import SYNTHETIC_FOLDER, log_mel, read_clips  # noqa: E402


def load_clips(n):
    """(n, 16000) float32 clips: the stand-in's digit wavs (repeated as needed) or signals."""
    folder = ROOT / "datasets" / SYNTHETIC_FOLDER
    files = sorted(f"{p.parent.name}/{p.name}" for p in folder.glob("*/*.wav")
                   if p.parent.name != "_background_noise_")
    if files:
        waves, _ = read_clips(folder, files[:n], progress=False)
        source = f"{len(waves)} clips of {folder.relative_to(ROOT)}"
        waves = waves.float().div(32768.0).repeat(-(-n // len(waves)), 1)[:n]
        return waves, source
    from tests.helpers import speech_like_clips
    return torch.from_numpy(speech_like_clips(n)), "speech-like test signals"


def librosa_features(clips):
    import librosa
    out = []
    for clip in clips:
        power = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=2048, hop_length=512,
                                               n_mels=32, pad_mode="reflect")
        out.append(librosa.power_to_db(power, ref=np.max))
    return np.stack(out)[:, None]


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips, source = load_clips(args.clips)
    numpy_clips = clips.numpy()
    librosa_features(numpy_clips[:2])  # warm-up (librosa's first call compiles with numba)
    log_mel(clips[:64])
    print(f"torch {torch.__version__}, {args.threads} threads; {args.clips:,} clips from {source}")
    torch_s, librosa_s, augment_s, worst = [], [], [], 0.0
    for part in np.array_split(np.arange(args.clips), args.rounds):
        ours, seconds = timed(log_mel, clips)
        torch_s.append(seconds / args.clips)
        reference, seconds = timed(librosa_features, numpy_clips[part])
        librosa_s.append(seconds / len(part))
        worst = max(worst, float(np.abs(ours[part].numpy() - reference).max()))
        lengths = torch.full((len(part),), 16000)
        generator = torch.Generator().manual_seed(len(augment_s))
        _, seconds = timed(augmented_log_mel, clips[part], lengths, generator)
        augment_s.append(seconds / len(part))
    fast, slow = statistics.median(torch_s), statistics.median(librosa_s)
    print(f"librosa, clip by clip : {slow * 1e6:8.0f} us/clip  ({slow * args.clips:6.1f} s for "
          f"{args.clips:,})")
    print(f"log_mel, one call     : {fast * 1e6:8.0f} us/clip  ({fast * args.clips:6.1f} s for "
          f"{args.clips:,})")
    print(f"ratio librosa / log_mel: {slow / fast:.1f}x (target >= 5x); worst difference "
          f"{worst:.2e} dB")
    print(f"augmented_log_mel     : {statistics.median(augment_s) * 1e6:8.0f} us/clip "
          f"(medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
