"""The paper's MNIST pixel noise: exact counts, value, reproducibility."""

import pytest
import torch

from data.mnist import normalize
from data.noise import NOISE_VALUE, PAPER_LEVELS, add_pixel_noise

LEVELS = list(PAPER_LEVELS)
COUNTS = [0, 39, 78, 117, 156, 196, 235, 274, 313, 352, 392]


@pytest.mark.parametrize("level, count", list(zip(LEVELS, COUNTS)))
def test_exactly_int_784_p_distinct_pixels_set_to_0_7469(level, count):
    images = torch.zeros(50, 1, 28, 28)
    noisy = add_pixel_noise(images, level, torch.Generator().manual_seed(0))
    changed = (noisy != images).flatten(1)
    assert changed.sum(1).tolist() == [count] * 50
    assert torch.all(noisy.flatten(1)[changed] == NOISE_VALUE)
    assert torch.all(images == 0)  # input untouched


def test_arange_levels_give_the_same_counts():
    images = torch.zeros(2, 1, 28, 28)
    levels = torch.arange(0, 0.55, 0.05).tolist()  # 0.15000000000000002, ...
    counts = [int((add_pixel_noise(images, p) != 0).sum()) // 2 for p in levels]
    assert counts == COUNTS


def test_noise_reads_two_after_normalisation_and_may_cover_digit_pixels():
    images = torch.ones(1, 1, 28, 28)  # a "digit" everywhere
    noisy = add_pixel_noise(images, 0.5, torch.Generator().manual_seed(1))
    assert int((noisy == NOISE_VALUE).sum()) == 392
    assert torch.allclose(normalize(noisy)[noisy == NOISE_VALUE], torch.tensor(2.0), atol=1e-5)


def test_reproducible_from_the_generator():
    images = torch.rand(5, 1, 28, 28)
    a = add_pixel_noise(images, 0.3, torch.Generator().manual_seed(7))
    b = add_pixel_noise(images, 0.3, torch.Generator().manual_seed(7))
    c = add_pixel_noise(images, 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_positions_are_uniform_over_the_image():
    hits = (add_pixel_noise(torch.zeros(4000, 1, 28, 28), 0.1,
                            torch.Generator().manual_seed(0)) != 0).float().mean(0)
    assert abs(hits.mean().item() - 78 / 784) < 1e-6
    assert hits.min() > 0.06 and hits.max() < 0.14  # every pixel about 10% of the time
