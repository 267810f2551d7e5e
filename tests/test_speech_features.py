"""The batched log-mel against librosa, and its invariants."""

import librosa
import numpy as np
import pytest
import torch

from data.speech_commands import log_mel
from data.speech_features import CHUNK, slaney_mel_filterbank
from tests.helpers import speech_like_clips

SR = 16_000


def librosa_log_mel(clip):
    """The paper's features with librosa (float64): the reference for log_mel."""
    power = librosa.feature.melspectrogram(y=clip, sr=SR, n_fft=2048, hop_length=512,
                                           n_mels=32, pad_mode="reflect")
    return librosa.power_to_db(power, ref=np.max, amin=1e-10, top_db=80.0)


def test_mel_filterbank_equals_librosa_slaney():
    reference = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=32, fmin=0.0, fmax=8000.0)
    np.testing.assert_allclose(slaney_mel_filterbank(), reference, rtol=1e-5, atol=1e-9)


def test_log_mel_matches_librosa_within_a_thousandth_of_a_db():
    rng = np.random.default_rng(1)
    tone = np.sin(2 * np.pi * 440 * np.arange(SR) / SR)  # most bins at the -80 dB floor
    clips = np.concatenate([speech_like_clips(6), np.stack([
        tone, rng.uniform(-1, 1, SR), np.zeros(SR), 1e-3 * rng.standard_normal(SR),
    ]).astype(np.float32)])
    ours = log_mel(torch.from_numpy(clips)).numpy()
    assert ours.shape == (len(clips), 1, 32, 32) and ours.dtype == np.float32
    for clip, mine in zip(clips, ours):
        reference = librosa_log_mel(clip.astype(np.float64))
        assert np.abs(mine[0] - reference).max() < 1e-3


def test_log_mel_is_relative_to_the_clip_max_and_floored_at_minus_80_db():
    clips = torch.from_numpy(speech_like_clips(3, seed=2))
    features = log_mel(clips)
    assert torch.all(features.amax(dim=(1, 2, 3)) == 0.0)
    assert torch.all(features.amin(dim=(1, 2, 3)) >= -80.0)
    torch.testing.assert_close(log_mel(0.1 * clips), features, atol=1e-3, rtol=0)
    assert torch.all(log_mel(torch.zeros(2, SR)) == 0.0)  # silence: 0 dB everywhere


def test_log_mel_results_do_not_depend_on_batching():
    clips = torch.from_numpy(speech_like_clips(2 * CHUNK + 3, seed=3))
    picks = [0, CHUNK - 1, CHUNK, 2 * CHUNK + 2]
    one_by_one = torch.cat([log_mel(clips[i:i + 1]) for i in picks])
    torch.testing.assert_close(log_mel(clips)[picks], one_by_one, atol=1e-4, rtol=0)
    assert log_mel(clips[:0]).shape == (0, 1, 32, 32)


def test_log_mel_rejects_wrong_lengths():
    with pytest.raises(ValueError, match="16000"):
        log_mel(torch.zeros(2, 15_999))
