"""log_mel in a plain Python process against one that tunes malloc as run.py does.

Each variant runs in a fresh process (malloc settings are process-wide): 2,000 random clips,
one thread, median of --rounds passes after a warm-up; ``--chunk`` sets data.speech_features's
chunk size (default: the module's). Prints microseconds per clip and the ratio.
    python benchmarks/bench_log_mel_alone.py [--rounds 5] [--chunk 64]
"""

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import statistics, sys, time, torch
sys.path.insert(0, {repo!r})
if {tuned}:
    from experiments.core.speed import keep_freed_memory
    keep_freed_memory()
import data.speech_features as features
if {chunk}:
    features.CHUNK = {chunk}
torch.set_num_threads(1)
clips = torch.randn(2000, 16000) * 0.1
features.log_mel(clips[:256])
times = []
for _ in range({rounds}):
    start = time.perf_counter()
    features.log_mel(clips)
    times.append((time.perf_counter() - start) / len(clips) * 1e6)
print(statistics.median(times))
"""


def per_clip(tuned, rounds, chunk):
    code = CHILD.format(repo=str(REPO), tuned=tuned, rounds=rounds, chunk=chunk or 0)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=None)
    args = parser.parse_args()
    plain, tuned = per_clip(False, args.rounds, args.chunk), per_clip(True, args.rounds, args.chunk)
    print(f"log_mel, 2,000 clips, 1 thread, chunk {args.chunk or 'default'}: plain process "
          f"{plain:.0f} us/clip, malloc tuned {tuned:.0f} us/clip ({plain / tuned:.2f}x)")


if __name__ == "__main__":
    main()
