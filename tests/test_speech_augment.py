"""The training augmentation: references for each step, identity, randomness and determinism."""

import librosa
import numpy as np
import torch

from data.speech_augment import (MAX_SHIFT, AugmentParams, augment_features, augmented_log_mel,
                                 change_speed, draw_params, stretch_and_shift)
from data.speech_features import log_mel
from tests.helpers import speech_like_clips


def identity(n):
    return AugmentParams(torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                         torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.int64))


def test_change_speed_is_np_interp_over_the_real_samples_then_zero_padded():
    rng = np.random.default_rng(0)
    waves = np.zeros((3, 16_000), dtype=np.float32)
    lengths = [16_000, 11_000, 7_321]
    for row, length in zip(waves, lengths):
        row[:length] = rng.uniform(-1, 1, length)
    factors = [1 / 1.2, 1 / 0.8, 1 / 1.05]
    out = change_speed(torch.from_numpy(waves), torch.tensor(lengths),
                       torch.tensor(factors, dtype=torch.float64)).numpy()
    for row, length, factor, got in zip(waves, lengths, factors, out):
        resampled = np.interp(np.arange(0, length, factor), np.arange(length), row[:length])
        expected = np.zeros(16_000)
        expected[:min(len(resampled), 16_000)] = resampled[:16_000]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_stretch_and_shift_equals_librosa_phase_vocoder_then_shift_and_crop():
    clip = speech_like_clips(1, seed=4)[0]
    spectrum = librosa.stft(clip.astype(np.float64), n_fft=2048, hop_length=512,
                            pad_mode="reflect")
    for rate, shift in [(1.2, 0), (0.8, 0), (0.83, 5), (1.17, -8), (1.0, 8), (0.8, -3)]:
        stretched = np.abs(librosa.phase_vocoder(spectrum, rate=rate, hop_length=512))
        a, b = max(0, -shift), max(0, shift)  # the paper's shift: pad one side, cut the other
        shifted = np.pad(stretched, ((0, 0), (a, b)))[:, b:b + stretched.shape[1]]
        expected = np.pad(shifted, ((0, 0), (0, max(0, 32 - shifted.shape[1]))))[:, :32]
        rates = torch.tensor([rate], dtype=torch.float64)
        got = stretch_and_shift(torch.from_numpy(np.abs(spectrum))[None], rates,
                                torch.tensor([shift]))[0]
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_identity_parameters_give_the_clean_features():
    clips = torch.from_numpy(speech_like_clips(4, seed=5))
    lengths = torch.full((4,), 16_000)
    torch.testing.assert_close(augment_features(clips, lengths, identity(4)), log_mel(clips),
                               atol=1e-4, rtol=0)


def test_each_step_applies_with_probability_one_half_within_its_range():
    params = draw_params(20_000, torch.Generator().manual_seed(0))
    shift_moves = 0.5 * 16 / 17  # a drawn shift of 0 frames changes nothing
    for values, neutral, low, high, p_changed in [
            (params.gain, 1.0, 0.7, 1.1, 0.5), (params.speed, 0.0, -0.2, 0.2, 0.5),
            (params.stretch, 0.0, -0.2, 0.2, 0.5),
            (params.shift, 0, -MAX_SHIFT, MAX_SHIFT, shift_moves)]:
        assert values.min() >= low and values.max() <= high
        assert abs((values != neutral).double().mean().item() - p_changed) < 0.015
    assert set(params.shift.tolist()) == set(range(-MAX_SHIFT, MAX_SHIFT + 1))


def test_augmentation_is_reproducible_from_the_generator_and_varies_with_it():
    clips = torch.from_numpy(speech_like_clips(70, seed=6))  # more than one 64-clip chunk
    lengths = torch.full((70,), 16_000)
    first = augmented_log_mel(clips, lengths, torch.Generator().manual_seed(1))
    again = augmented_log_mel(clips, lengths, torch.Generator().manual_seed(1))
    other = augmented_log_mel(clips, lengths, torch.Generator().manual_seed(2))
    assert first.shape == (70, 1, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again)
    changed = (first - log_mel(clips)).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert 0.7 < changed.double().mean() < 1.0  # all four skipped for only 1/16 of clips
    assert not torch.equal(first, other)
    assert first.amax(dim=(1, 2, 3)).eq(0).all() and first.amin() >= -80.0


def test_silence_stays_silent_under_augmentation():
    zeros = torch.zeros(8, 16_000)
    out = augmented_log_mel(zeros, torch.full((8,), 16_000), torch.Generator().manual_seed(3))
    assert torch.all(out == 0.0)
