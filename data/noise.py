"""The paper's MNIST pixel noise (section 3 of docs/paper_spec.md).

At noise level p each 28x28 image gets exactly ``int(784 * p)`` distinct pixels, chosen
uniformly at random, overwritten with 0.7469 = mean + 2 * std of MNIST (0.1307 + 2 * 0.3081)
in [0, 1] pixel space, before normalisation, so that they read exactly 2.0 after it. Digit
pixels may be overwritten too. Levels 0.00..0.50 give 0, 39, 78, ..., 352, 392 pixels.
"""

import torch

NOISE_VALUE = 0.7469
PAPER_LEVELS = tuple(round(0.05 * i, 2) for i in range(11))  # 0.00..0.50: the paper's sweep


def noisy_pixel_count(num_pixels, level):
    """int(num_pixels * level), robust to levels like 0.25 stored as 0.24999999999999997."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must be in [0, 1], got {level}")
    return int(num_pixels * level + 1e-9)


def pixel_noise_mask(num_images, num_pixels, level, generator=None):
    """(num_images, num_pixels) bool mask with exactly int(num_pixels * level) True per row."""
    count = noisy_pixel_count(num_pixels, level)
    mask = torch.zeros(num_images, num_pixels, dtype=torch.bool)
    if count:
        scores = torch.rand(num_images, num_pixels, generator=generator)
        mask.scatter_(1, scores.topk(count, dim=1, sorted=False).indices, True)
    return mask


def add_pixel_noise(images, level, generator=None, value=NOISE_VALUE):
    """A new tensor: ``images`` (N, 1, 28, 28) in [0, 1] with the paper's pixel noise.

    Reproducible from ``generator`` (a torch.Generator on the CPU).
    """
    n = images.shape[0]
    mask = pixel_noise_mask(n, images[0].numel(), level, generator).view_as(images)
    return images.masked_fill(mask.to(images.device), value)
