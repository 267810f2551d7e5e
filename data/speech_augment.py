"""The paper's training augmentation for Speech Commands, batched and drawn from a torch.Generator.

Each clip independently gets each step with probability 0.5, in this order (docs/paper_spec.md sec. 4):

1. amplitude:   x <- g x,  g ~ U(0.7, 1.1)
2. speed+pitch: x'[j] = x(j f), f = 1 / (1 + s), s ~ U(-0.2, 0.2), linear interpolation over
   the clip's own L samples (x(p) = x[L-1] for L-1 <= p < L), for j f < L; the clip becomes
   (1 + s) times longer and its pitch scales by f. Then pad/crop to 16,000 samples.
3. STFT (as the features: n_fft 2048, hop 512, reflect padding) -> 32 frames.
4. time stretch, phase vocoder at rate r = 1 + s, s ~ U(-0.2, 0.2): frame t of the
   ceil(32 / r) output frames has magnitude (1 - a) |X[n]| + a |X[n + 1]|, n + a = t r, with
   |X| = 0 past the last frame (librosa.phase_vocoder). Only |.|^2 reaches the features, so the
   vocoder's phase is never computed.
5. time shift by k ~ U{-8, ..., 8} frames: out[t] = in[t + k], zero outside the stretched clip.
6. crop/pad to 32 frames, then mel + dB (``data.speech_features``).

A skipped step has its identity value (g = 1, s = 0, k = 0); clips at the identity skip the
resampling and the stretch/shift work (the formulas would return them unchanged anyway).
"""

from dataclasses import dataclass

import torch

from data.speech_features import CHUNK, N_FRAMES, N_MELS, power_spectrogram, power_to_log_mel

P_APPLY = 0.5
GAIN_RANGE = (0.7, 1.1)
SPEED_SCALE = 0.2
STRETCH_SCALE = 0.2
MAX_SHIFT = 8


@dataclass
class AugmentParams:
    """Per-clip parameters, each (B,): identity values where a step is skipped."""
    gain: torch.Tensor  # amplitude factor g
    speed: torch.Tensor  # s of the speed+pitch change (the clip gets 1 + s times longer)
    stretch: torch.Tensor  # s of the time stretch (vocoder rate 1 + s)
    shift: torch.Tensor  # frames k, int64


def _maybe(n, generator, low, high, identity):
    """(n,) values ~ U(low, high), each replaced by ``identity`` with probability 1 - P_APPLY."""
    apply = torch.rand(n, generator=generator) < P_APPLY
    value = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.where(apply, value, torch.full_like(value, identity))


def draw_params(n, generator):
    """Draw the augmentation of ``n`` clips from ``generator`` (a fixed order of draws)."""
    gain = _maybe(n, generator, *GAIN_RANGE, 1.0)
    speed = _maybe(n, generator, -SPEED_SCALE, SPEED_SCALE, 0.0)
    stretch = _maybe(n, generator, -STRETCH_SCALE, STRETCH_SCALE, 0.0)
    apply_shift = torch.rand(n, generator=generator) < P_APPLY
    shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n,), generator=generator)
    return AugmentParams(gain, speed, stretch, torch.where(apply_shift, shift, 0))


def change_speed(waves, lengths, factor):
    """(B, N) clips whose first ``lengths`` samples are real -> (B, N) resampled at j * factor.

    out[j] = linear interpolation of x at p = j * factor when p < L (x[L-1] for p >= L - 1),
    else 0: ``np.interp(np.arange(0, L, factor), np.arange(L), x)`` zero-padded or cropped to N.
    """
    n = waves.shape[1]
    pos = torch.arange(n, dtype=torch.float64) * factor[:, None]  # (B, N)
    left = pos.floor().long()
    inside = left < lengths[:, None]
    last = (lengths[:, None] - 1).long()
    left = torch.minimum(left, last)
    right = torch.minimum(left + 1, last)
    frac = (pos - left).to(waves.dtype)
    out = (1 - frac) * waves.gather(1, left) + frac * waves.gather(1, right)
    return torch.where(inside, out, torch.zeros((), dtype=waves.dtype))


def stretch_and_shift(magnitude, rate, shift, n_frames=N_FRAMES):
    """(B, F, T) STFT magnitudes -> (B, F, n_frames): vocoder stretch at ``rate``, shift, crop.

    Output frame t reads stretched frame u = t + shift, whose magnitude interpolates input
    frames at u * rate; it is zero when u < 0, u >= ceil(T / rate) or t >= ceil(T / rate).
    Done as one batched matmul with a (T, n_frames) interpolation matrix per clip.
    """
    return torch.bmm(magnitude, interpolation_matrix(rate, shift, magnitude.shape[2], n_frames,
                                                     magnitude.dtype))


def interpolation_matrix(rate, shift, t_in, n_frames, dtype):
    """(B, t_in, n_frames) W with out = X @ W: column t holds 1 - a at row n and a at n + 1."""
    rate = rate.to(torch.float64)[:, None]
    stretched_len = torch.ceil(t_in / rate).long()  # (B, 1)
    t = torch.arange(n_frames)[None, :]
    u = t + shift[:, None]  # (B, n_frames)
    valid = ((u >= 0) & (u < stretched_len) & (t < stretched_len)).to(dtype)
    pos = u.clamp(min=0).to(torch.float64) * rate
    left = pos.floor().long().clamp(max=t_in)
    alpha = (pos - left).to(dtype)
    weights = torch.zeros(len(rate), t_in + 2, n_frames, dtype=dtype)  # rows >= t_in: zeros
    weights.scatter_add_(1, left[:, None, :], ((1 - alpha) * valid)[:, None, :])
    weights.scatter_add_(1, left[:, None, :] + 1, (alpha * valid)[:, None, :])
    return weights[:, :t_in]


def augment_features(waves, lengths, params):
    """(B, 16000) clips with real lengths (B,) -> (B, 1, 32, 32) augmented log-mel features."""
    x = waves * params.gain[:, None].to(waves.dtype)
    moved = params.speed != 0
    x[moved] = change_speed(x[moved], lengths[moved], 1.0 / (1.0 + params.speed[moved]))
    power = power_spectrogram(x)  # (B, 1025, 32)
    warped = (params.stretch != 0) | (params.shift != 0)
    magnitude = stretch_and_shift(power[warped].sqrt(), 1.0 + params.stretch[warped],
                                  params.shift[warped])
    power[warped] = magnitude.square()
    return power_to_log_mel(power)


def augmented_log_mel(waves, lengths, generator):
    """Draw parameters from ``generator`` and augment (B, 16000) clips, in chunks of CHUNK."""
    params = draw_params(len(waves), generator)
    out = torch.empty(len(waves), 1, N_MELS, N_FRAMES)
    for start in range(0, len(waves), CHUNK):
        part = slice(start, start + CHUNK)
        chunk_params = AugmentParams(*(v[part] for v in vars(params).values()))
        out[part] = augment_features(waves[part], lengths[part], chunk_params)
    return out
