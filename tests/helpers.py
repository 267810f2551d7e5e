"""Helpers that several test files share (and two benchmarks): the overrides of tiny training
runs, records without their timing fields, speech-like signals, a tiny Speech Commands folder
and a local HTTP server. Test files import these from here, never from each other."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import soundfile

from data.speech_features import SAMPLE_RATE
from data.speech_words import DIGITS

# --set overrides of a training run on tiny real MNIST: seconds per epoch
TINY = ["data.train_limit=96", "data.test_limit=40", "noise.levels=[0.0, 0.25, 0.5]"]
TIMING = ("seconds", "train_seconds", "eval_seconds")


def strip_timing(records):
    """Metrics records without the fields that differ from one run to the next (wall times)."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def speech_like_clips(n, seed=0):
    """Harmonic 'vowels' with moving pitch, bursts of noise, pauses and short clips, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clips = []
    for _ in range(n):
        f0 = rng.uniform(80, 300) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = sum(np.sin(h * phase) / h for h in range(1, 12))
        envelope = np.exp(-((t - rng.uniform(0.3, 0.7)) / rng.uniform(0.05, 0.2)) ** 2)
        clip = envelope * voiced + rng.uniform(1e-4, 1e-2) * rng.standard_normal(SAMPLE_RATE)
        clip[int(rng.uniform(0.6, 1.0) * SAMPLE_RATE):] = 0.0  # padded ending, as short clips get
        clips.append(0.9 * clip / np.abs(clip).max())
    return np.stack(clips).astype(np.float32)


VALIDATION = ["zero/s1_nohash_0.wav", "one/s1_nohash_0.wav", "bed/s1_nohash_0.wav"]
TESTING = ["zero/s2_nohash_0.wav", "two/s2_nohash_1.wav", "cat/s2_nohash_0.wav"]


def write_clip(path, seed, length=16_000, rate=16_000, channels=1):
    """A tone-plus-noise clip; its frequency depends on the seed so clips differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    x = 0.5 * np.sin(2 * np.pi * (200 + 37 * seed) * t) + 0.01 * rng.standard_normal(length)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.stack([x] * channels, axis=1) if channels > 1 else x
    soundfile.write(path, samples, rate, subtype="PCM_16")


def make_dataset(folder, train_per_digit=3, extra_zeros=4):
    """Digits (plus two other words) by speakers s1 (validation), s2 (test), t0.. (train).

    'zero' gets ``extra_zeros`` more training clips than the other digits (imbalance).
    """
    seed = 0
    for word in DIGITS + ("bed", "cat"):
        count = train_per_digit + (extra_zeros if word == "zero" else 0)
        names = ["s1_nohash_0", "s2_nohash_0", "s2_nohash_1"] + [f"t{i}_nohash_0"
                                                                 for i in range(count)]
        for name in names:
            seed += 1
            write_clip(folder / word / f"{name}.wav", seed, length=16_000 - 97 * (seed % 5))
    (folder / "validation_list.txt").write_text("\n".join(VALIDATION) + "\n")
    (folder / "testing_list.txt").write_text("\n".join(TESTING) + "\n")
    return folder


class Server:
    """An HTTP server on 127.0.0.1 serving one payload, with optional Range support."""

    def __init__(self, payload, honour_range=True, cut_first_response_at=None):
        self.payload, self.honour_range = payload, honour_range
        self.cut_at, self.ranges = cut_first_response_at, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.handle(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/archive.tar.gz"

    def handle(self, request):
        if request.path != "/archive.tar.gz":
            return request.send_error(404)
        header = request.headers.get("Range")
        self.ranges.append(header)
        start = int(header[6:-1]) if header and self.honour_range else 0
        body = self.payload[start:]
        request.send_response(206 if start else 200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if self.cut_at is not None:  # the connection drops mid-transfer, once
            body, self.cut_at = body[:self.cut_at], None
        request.wfile.write(body)

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,),  # quick shutdown
                         daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
