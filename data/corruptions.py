"""Common corruptions of MNIST digits beyond the paper's pixel noise, as pure, seeded functions.

Every corruption maps images (N, 1, H, W) in [0, 1] and a severity s in 0..5 to new images in
[0, 1]; s = 0 is the identity (a copy), and a corruption's randomness comes only from the
torch.Generator passed in, like the paper's noise (data/noise.py). Each severity sets one
parameter a_s (the ``amounts`` below, for s = 1..5):

    gaussian_noise   x + a N(0, 1), clipped                   a = std in pixel units
    salt_and_pepper  each pixel with probability a set to 0 or 1 (even odds)
    gaussian_blur    x * G_a (separable, radius int(4a + 0.5), edges replicated)  a = std
    contrast         m + a (x - m), m = the image's mean pixel                a = kept contrast
    brightness       x + a, clipped
    occlusion        one a x a square, placed uniformly inside the image, set to 0 (background)
    rotation         rotate by +-a degrees (sign at random per image)
    shear            x' = x + (+-a) y (horizontal shear, sign at random)
    scale            zoom by (1 + a) or 1 / (1 + a) (at random), about the centre
    translation      shift by a pixels in a uniformly random direction
    pixel_noise      the paper's noise: int(784 a) pixels set to 0.7469 (a = the noise level)

The affine ones resample as MNIST-C does (Mu & Gilmer, 2019): bilinearly about the image
centre, with the background (0) filling what comes in from outside; MNIST-C itself, with its
own corruptions and settings, is data/mnist_c.py. These are kept apart from it.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from data.noise import add_pixel_noise

SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Corruption:
    title: str  # how tables and figures name it
    parameter: str  # what its amounts are
    amounts: tuple  # the parameter a_s at severities 1..5
    apply: Callable  # (images, a, generator) -> images
    unreadable_from: Optional[int] = None  # the first severity whose digits a human no longer
    #                                        reads (judged by eye from the report's mosaic)

    def __call__(self, images, severity, generator=None):
        """``images`` (N, 1, H, W) in [0, 1] corrupted at ``severity`` (0: an unchanged copy)."""
        if severity not in (0, *SEVERITIES):
            raise ValueError(f"severity must be in 0..{SEVERITIES[-1]}, got {severity}")
        if severity == 0:
            return images.clone()
        return self.apply(images, self.amounts[severity - 1], generator).clamp(0.0, 1.0)


def random_signs(n, generator):
    return torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1  # (n,) of +-1


def gaussian_noise(images, std, generator):
    return images + std * torch.randn(images.shape, generator=generator)


def salt_and_pepper(images, fraction, generator):
    hit = torch.rand(images.shape, generator=generator) < fraction
    salt = torch.rand(images.shape, generator=generator) < 0.5
    return torch.where(hit, salt.to(images.dtype), images)


def blur(images, std, padding="replicate"):
    """``images`` (N, C, H, W) * a Gaussian of ``std`` pixels: separable, radius
    int(4 std + 0.5) (scipy's and skimage's), edges ``padding``: replicate or zeros."""
    radius = int(4 * std + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-offsets ** 2 / (2 * std ** 2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images, (radius,) * 4, mode="replicate") if padding == "replicate" else F.pad(
        images, (radius,) * 4)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along W
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along H


def gaussian_blur(images, std, generator=None):
    return blur(images, std)


def contrast(images, kept, generator=None):
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + kept * (images - mean)


def brightness(images, shift, generator=None):
    return images + shift


def random_squares(n, h, w, side, generator=None):
    """(n, 1, h, w) bool masks, each one ``side`` x ``side`` square placed uniformly inside."""
    top = torch.randint(0, h - side + 1, (n, 1, 1, 1), generator=generator)
    left = torch.randint(0, w - side + 1, (n, 1, 1, 1), generator=generator)
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


def occlusion(images, side, generator):
    n, _, h, w = images.shape
    return images.masked_fill(random_squares(n, h, w, side, generator), 0.0)


def affine(images, matrices):
    """Resample ``images`` (N, C, H, W) at A p + t for each output point p, in the centred
    coordinates of ``F.affine_grid`` ([-1, 1] across the image); ``matrices`` (N, 2, 3) = [A | t].
    Points from outside the image read 0 (the background)."""
    grid = F.affine_grid(matrices.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _linear_maps(a):
    """(N, 2, 3) affine matrices with linear part ``a`` (N, 2, 2) and no shift."""
    return torch.cat([a, torch.zeros(len(a), 2, 1)], dim=2)


def rotation(images, degrees, generator):
    angle = torch.deg2rad(degrees * random_signs(len(images), generator))
    cos, sin = torch.cos(angle), torch.sin(angle)
    return affine(images, _linear_maps(torch.stack([torch.stack([cos, -sin], 1),
                                                    torch.stack([sin, cos], 1)], 1)))


def shear(images, factor, generator):
    s = factor * random_signs(len(images), generator)
    ones, zeros = torch.ones_like(s), torch.zeros_like(s)
    return affine(images, _linear_maps(torch.stack([torch.stack([ones, s], 1),
                                                    torch.stack([zeros, ones], 1)], 1)))


def scale(images, growth, generator):
    zoom = (1 + growth) ** random_signs(len(images), generator)  # (N,)
    # Sampling at p / zoom shows the content zoom times larger.
    return affine(images, _linear_maps(torch.eye(2).expand(len(images), 2, 2)
                                       / zoom.view(-1, 1, 1)))


def translation(images, pixels, generator):
    n, _, h, w = images.shape
    direction = 2 * math.pi * torch.rand(n, generator=generator)
    # A shift of d pixels is 2d / size in grid units; sampling at p - d moves the content by +d.
    shift = torch.stack([-2 * pixels * torch.cos(direction) / w,
                         -2 * pixels * torch.sin(direction) / h], 1)
    return affine(images, torch.cat([torch.eye(2).expand(n, 2, 2), shift.view(n, 2, 1)], 2))


CORRUPTIONS = {
    "gaussian_noise": Corruption("Gaussian noise", "noise std, pixel units",
                                 (0.1, 0.2, 0.3, 0.4, 0.5), gaussian_noise),
    "salt_and_pepper": Corruption("salt and pepper", "fraction set to 0 or 1",
                                  (0.05, 0.1, 0.2, 0.3, 0.4), salt_and_pepper),
    "gaussian_blur": Corruption("Gaussian blur", "blur std, pixels",
                                (0.5, 1.0, 1.5, 2.0, 2.5), gaussian_blur),
    "contrast": Corruption("contrast", "contrast kept", (0.4, 0.3, 0.2, 0.1, 0.05), contrast),
    "brightness": Corruption("brightness", "added to every pixel",
                             (0.1, 0.2, 0.3, 0.4, 0.5), brightness),
    # Judged from the mosaic: a 12-pixel square or larger hides most of a digit, and at 60
    # degrees 7, 1, 4 and 6 / 9 read as other marks or digits.
    "occlusion": Corruption("occlusion", "square side, pixels", (6, 9, 12, 15, 18), occlusion,
                            unreadable_from=3),
    "rotation": Corruption("rotation", "degrees", (10, 20, 30, 45, 60), rotation,
                           unreadable_from=5),
    "shear": Corruption("shear", "shear factor", (0.1, 0.2, 0.3, 0.45, 0.6), shear),
    "scale": Corruption("scale", "zoom x(1+a) or /(1+a)", (0.1, 0.2, 0.3, 0.4, 0.5), scale),
    "translation": Corruption("translation", "shift, pixels", (1, 2, 3, 4, 5), translation),
    "pixel_noise": Corruption("the paper's pixel noise", "fraction set to 0.7469",
                              (0.1, 0.2, 0.3, 0.4, 0.5), add_pixel_noise),
}
