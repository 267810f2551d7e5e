"""MNIST-C (Mu & Gilmer, 2019): its 15 corruptions with its parameters, as pure, seeded functions.

The published set applies each corruption once, at one fixed setting, to the MNIST test
images; it cannot be downloaded here, so these are written from the paper's description and
settings (each one's default severity in the authors' generator), in torch, on images
(N, 1, 28, 28) in [0, 1]. A corruption's randomness comes only from the torch.Generator passed
in; pixel coordinates below are (row, column) = (i, j), the image centre (13.5, 13.5).

    shot_noise     Poisson(lambda x) / lambda, lambda = 3
    impulse_noise  salt and pepper: 17% of the pixels set to 0 or 1 (even odds)
    glass_blur     blur (std 0.7), then twice: for each pixel from the bottom right to (2, 2),
                   with probability 1/2 swap it with a neighbour at offset (di, dj) in
                   {-1, 0}^2 (values kept on the 8-bit grid, as the authors' images are), blur
    motion_blur    a one-sided Gaussian streak: sum_i w_i x(p + i u), i = 0..20,
                   w_i ~ exp(-i^2 / (2 * 3^2)), u a unit vector at an angle U(-45, 45) degrees
                   (offsets rounded to pixels, edges replicated)
    shear          sample x at A (p - c) + c, A = [[1, -sin s], [0, cos s]] in (column, row),
                   s = +-0.4 (sign at random): a shear with the authors' slight compression
    scale          sample at (p - c) / 0.7 + c: the digit shrinks to 0.7 of its size
    rotate         rotate by +-0.4 radians (22.9 degrees; sign at random)
    brightness     x + 0.5, clipped (the HSV value channel of a grey image is x)
    translate      shift by 3 pixels along each axis, each sign at random
    stripe         invert (1 - x) the columns 0-6 and 21-27
    fog            x + 3 P, P the top-left 28 x 28 of a 256 x 256 diamond-square plasma in
                   [0, 1] (roughness decay 1.4); then x * m / (m + 3), m = the clean image's max
    spatter        liquid = blur_1(N(0.65, 0.3)), kept where > 0.65; m = blur_1.5(liquid > 0.65),
                   zeroed where < 0.8; x (1 - m) + (63 / 255) m
    dotted_line    a bright line from (r0, 0) to (r1, 27), r0, r1 uniform in 0..26, in pairs of
                   columns on and off (0-1 off, 2-3 on, ...); intensity 1 + log(1 - d / 2.3)
                   at vertical distance d, clipped to [0, 1]; added, clipped
    zigzag         the same line profile along a zigzag (arms 2 pixels across, 2 up and down)
                   from column 2 to 25 at row r0 ~ U{0..26}, tilted towards r0 + U{-5..4}
    canny_edges    the binary edges of Canny's detector: blur std 1 (normalised at the
                   border), Sobel gradients, non-maximum suppression along the gradient
                   (interpolated), hysteresis between 0.1 and 0.2 (8-connected); border 0

Blurs are Gaussian with radius int(4 std + 0.5), edges replicated, unless said otherwise.
Outputs are rounded to the 8-bit grid, as the published set is stored.
"""

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from data.corruptions import affine, blur, random_signs, salt_and_pepper

CENTRE = 13.5
SIDE = 28


@dataclass(frozen=True)
class MnistC:
    title: str  # how tables and figures name it
    setting: str  # its parameters, as MNIST-C sets them
    apply: Callable  # (images, generator) -> images
    unreadable: bool = False  # a human no longer reads the digits (judged from the mosaic)

    def __call__(self, images, generator=None):
        """``images`` (N, 1, 28, 28) in [0, 1], corrupted: a new tensor in [0, 1] on the 8-bit
        grid (k / 255), as the published set is stored."""
        if images.shape[-2:] != (SIDE, SIDE):
            raise ValueError(f"MNIST-C corrupts 28 x 28 images, got {tuple(images.shape)}")
        out = self.apply(images, generator).clamp(0.0, 1.0)
        return ((out * 255).round() / 255).to(images.dtype)


SHOT_LAMBDA = 3
IMPULSE_AMOUNT = 0.17
GLASS = (0.7, 1, 2)  # blur std, largest offset, passes
MOTION = (10, 3.0, 45.0)  # radius, std, largest angle (degrees)
SHEAR, ROTATE, SCALE, TRANSLATE = 0.4, 0.4, 0.7, 3
BRIGHTNESS = 0.5
STRIPE = ((0, 7), (21, 28))  # inverted column ranges
FOG = (3.0, 1.4)  # strength, roughness decay
SPATTER = (0.65, 0.3, 1.0, 0.65, 1.5)  # mean, std, blur std, threshold, mask blur std
MUD = 63 / 255
LINE_WIDTH = 2.3


def shot_noise(images, generator):
    return torch.poisson(images * SHOT_LAMBDA, generator=generator) / SHOT_LAMBDA


def impulse_noise(images, generator):
    return salt_and_pepper(images, IMPULSE_AMOUNT, generator)


def glass_blur(images, generator):
    std, delta, passes = GLASS
    x = (blur(images, std) * 255).floor() / 255  # the authors' 8-bit image
    x = x[:, 0].clone()  # (N, H, W)
    rows = torch.arange(len(x))
    for _ in range(passes):
        for i in range(SIDE - delta, delta, -1):
            for j in range(SIDE - delta, delta, -1):
                swap = torch.rand(len(x), generator=generator) < 0.5
                di, dj = (torch.randint(-delta, delta, (2, len(x)), generator=generator))
                n = rows[swap]
                a, b = x[n, i, j], x[n, i + di[swap], j + dj[swap]]
                x[n, i, j], x[n, i + di[swap], j + dj[swap]] = b, a
    return blur(x[:, None], std)


def shifted(images, di, dj):
    """``images`` (N, C, H, W) read at (i + di, j + dj) per image (integer (N,) offsets),
    edges replicated."""
    n, _, h, w = images.shape
    i = (torch.arange(h).view(1, h, 1) + di.view(n, 1, 1)).clamp(0, h - 1)
    j = (torch.arange(w).view(1, 1, w) + dj.view(n, 1, 1)).clamp(0, w - 1)
    flat = (i * w + j).view(n, 1, h * w).expand(-1, images.shape[1], -1)
    return images.flatten(2).gather(2, flat).view_as(images)


def motion_blur(images, generator):
    radius, std, largest = MOTION
    angle = torch.deg2rad((torch.rand(len(images), generator=generator) * 2 - 1) * largest)
    steps = torch.arange(2 * radius + 1, dtype=images.dtype)
    weights = torch.exp(-steps ** 2 / (2 * std ** 2))
    weights = weights / weights.sum()
    out = torch.zeros_like(images)
    for step, weight in zip(steps, weights):
        dj, di = (step * torch.cos(angle)).round().long(), (step * torch.sin(angle)).round().long()
        out += weight * shifted(images, di, dj)
    return out


def _about_centre(linear):
    """(N, 2, 3) affine_grid matrices that sample at A (p - c) + c: with H = W the centred
    grid coordinates take A unchanged."""
    return torch.cat([linear, torch.zeros(len(linear), 2, 1)], dim=2)


def shear(images, generator):
    s = SHEAR * random_signs(len(images), generator)
    ones, zeros = torch.ones_like(s), torch.zeros_like(s)
    a = torch.stack([torch.stack([ones, -torch.sin(s)], 1),
                     torch.stack([zeros, torch.cos(s)], 1)], 1)
    return affine(images, _about_centre(a))


def scale(images, generator=None):
    a = torch.eye(2).expand(len(images), 2, 2) / SCALE
    return affine(images, _about_centre(a))


def rotate(images, generator):
    angle = ROTATE * random_signs(len(images), generator)
    cos, sin = torch.cos(angle), torch.sin(angle)
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    return affine(images, _about_centre(a))


def brightness(images, generator=None):
    return images + BRIGHTNESS


def translate(images, generator):
    n = len(images)
    shift = TRANSLATE * torch.stack([random_signs(n, generator), random_signs(n, generator)], 1)
    # Sampling at p + t (in grid units 2 t / 28) moves the content by -t: either sign is drawn.
    matrices = torch.cat([torch.eye(2).expand(n, 2, 2), (2 * shift / SIDE).view(n, 2, 1)], 2)
    return affine(images, matrices)


def stripe(images, generator=None):
    out = images.clone()
    for start, stop in STRIPE:
        out[..., start:stop] = 1 - images[..., start:stop]
    return out


def plasma(n, size, decay, generator):
    """(n, size, size) diamond-square height maps in [0, 1] (size a power of two), the
    authors' recipe: noise of amplitude w^2 at each level, w = 100 divided by ``decay`` per
    level, neighbours wrapped around."""
    m = torch.zeros(n, size, size)
    step, wibble = size, 100.0

    def wibbled(total):
        noise = torch.rand(total.shape, generator=generator) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        around = corners + corners.roll(-1, 1)
        m[:, half::step, half::step] = wibbled(around + around.roll(-1, 2))
        centres = m[:, half::step, half::step]
        m[:, ::step, half::step] = wibbled(centres + centres.roll(1, 1)
                                           + corners + corners.roll(-1, 2))
        m[:, half::step, ::step] = wibbled(centres + centres.roll(1, 2)
                                           + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def fog(images, generator):
    strength, decay = FOG
    top = images.amax((1, 2, 3), keepdim=True)
    maps = torch.cat([plasma(len(part), 256, decay, generator)[:, :SIDE, :SIDE]
                      for part in images.split(250)])  # a batch of 256 x 256 maps at a time
    x = images + strength * maps[:, None].to(images.dtype)
    return x * top / (top + strength)


def spatter(images, generator):
    mean, std, liquid_std, threshold, mask_std = SPATTER
    liquid = blur(mean + std * torch.randn(images.shape, generator=generator), liquid_std)
    wet = blur((liquid > threshold).to(images.dtype), mask_std)
    wet = torch.where(wet < 0.8, torch.zeros_like(wet), wet)
    return images * (1 - wet) + MUD * wet


def line(c0, r0, c1, r1):
    """(N, 28, 28) the authors' line from (r0, c0) to (r1, c1) (tensors (N,)): intensity
    1 + log(1 - d / 2.3) at vertical distance d from it, clipped to [0, 1], between columns
    floor(c0) and ceil(c1) (exclusive); nothing where c1 == c0."""
    rows = torch.arange(SIDE, dtype=torch.float64).view(1, SIDE, 1)
    cols = torch.arange(SIDE, dtype=torch.float64).view(1, 1, SIDE)
    c0, r0, c1, r1 = (v.double().view(-1, 1, 1) for v in (c0, r0, c1, r1))
    flat = c1 == c0
    slope = (r1 - r0) / torch.where(flat, torch.ones_like(c1), c1 - c0)
    d = (rows - (slope * (cols - c0) + r0)).abs().clamp(max=LINE_WIDTH - 1e-10)
    value = (torch.log(1 - d / LINE_WIDTH) + 1).clamp(0, 1)
    inside = (cols >= c0.floor()) & (cols < c1.ceil()) & ~flat
    return torch.where(inside, value, torch.zeros_like(value))


def dotted_line(images, generator):
    n = len(images)
    r0, r1 = torch.randint(0, SIDE - 1, (2, n), generator=generator)
    drawn = line(torch.zeros(n), r0, torch.full((n,), SIDE - 1.0), r1)
    on = (torch.arange(SIDE) // 2) % 2 == 1  # columns 2-3, 6-7, ...
    return images + (drawn * on).unsqueeze(1).to(images.dtype)


def zigzag_points(r0, r1):
    """(N, K) columns and rows of the authors' zigzag's corners."""
    c0, c1, arm = 2.0, 25.0, 2.0
    theta = torch.atan((r1 - r0).double() / (c1 - c0))  # (N,)
    length = (c1 - c0) / torch.cos(theta)
    turns = int(((length.max() - arm) // (2 * arm)).item()) + 1  # the same for every tilt here
    cs, rs = [torch.zeros_like(theta)], [torch.zeros_like(theta)]
    for i in range(turns):
        cs.append(torch.full_like(theta, (2 * i + 1) * arm))
        rs.append(torch.full_like(theta, (-1) ** i * arm))
    last = 2 * arm * torch.div(length, 2 * arm, rounding_mode="floor")  # < length: a last arm
    cs.append(length)
    rs.append(rs[-1] / (2 * (length - last)))
    c, r = torch.stack(cs, 1), torch.stack(rs, 1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    return c * cos - r * sin + c0, c * sin + r * cos + r0[:, None].double()


def zigzag(images, generator):
    n = len(images)
    r0 = torch.randint(0, SIDE - 1, (n,), generator=generator)
    r1 = r0 + torch.randint(-5, 5, (n,), generator=generator)
    cs, rs = zigzag_points(r0, r1)
    x = images[:, 0].double()
    for k in range(1, cs.shape[1]):
        x = (x + line(cs[:, k - 1], rs[:, k - 1], cs[:, k], rs[:, k])).clamp(0, 1)
    return x[:, None]


def _normalised_blur(images, std):
    """Gaussian blur with zero padding, divided by the blur of ones (skimage's Canny)."""
    ones = torch.ones_like(images)
    return blur(images, std, padding="zeros") / blur(ones, std, padding="zeros")


def sobel(images):
    """(rows, columns) Sobel derivatives of (N, 1, H, W), edges reflected."""
    x = F.pad(images, (1, 1, 1, 1), mode="reflect")
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=images.dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=images.dtype)
    along_rows = F.conv2d(x, (diff.view(3, 1) * smooth.view(1, 3)).view(1, 1, 3, 3))
    along_cols = F.conv2d(x, (smooth.view(3, 1) * diff.view(1, 3)).view(1, 1, 3, 3))
    return along_rows, along_cols


def local_maxima(magnitude, gi, gj):
    """Whether each pixel's magnitude is >= the magnitude interpolated one pixel along and
    against its gradient (gi, gj) (non-maximum suppression)."""
    n, _, h, w = magnitude.shape
    padded = F.pad(magnitude, (1, 1, 1, 1))[:, 0]  # (N, H + 2, W + 2), zeros outside
    along_i = gi.abs() >= gj.abs()
    big, small = torch.where(along_i, gi, gj), torch.where(along_i, gj, gi)
    weight = (small.abs() / big.abs().clamp(min=1e-30))[:, 0]
    sign_big, sign_small = big.sign()[:, 0], small.sign()[:, 0]
    rows = torch.arange(h).view(1, h, 1).expand(n, h, w) + 1
    cols = torch.arange(w).view(1, 1, w).expand(n, h, w) + 1
    turn = along_i[:, 0]

    def at(step_big, step_small):
        di = torch.where(turn, step_big, step_small).long()
        dj = torch.where(turn, step_small, step_big).long()
        flat = ((rows + di) * (w + 2) + cols + dj).view(n, -1)
        return padded.view(n, -1).gather(1, flat).view(n, h, w)

    zero = torch.zeros_like(sign_big)
    ahead = (1 - weight) * at(sign_big, zero) + weight * at(sign_big, sign_small)
    behind = (1 - weight) * at(-sign_big, zero) + weight * at(-sign_big, -sign_small)
    m = magnitude[:, 0]
    return ((m >= ahead) & (m >= behind) & (m > 0))[:, None]


def canny_edges(images, generator=None, low=0.1, high=0.2):
    smoothed = _normalised_blur(images.double(), 1.0)
    gi, gj = sobel(smoothed)
    magnitude = torch.hypot(gi, gj)
    keep = local_maxima(magnitude, gi, gj)
    keep[..., 0, :] = keep[..., -1, :] = False  # the border is never an edge
    keep[..., :, 0] = keep[..., :, -1] = False
    weak, edges = keep & (magnitude >= low), keep & (magnitude >= high)
    while True:  # hysteresis: weak pixels 8-connected to a strong one
        grown = weak & (F.max_pool2d(edges.double(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            return edges.to(images.dtype)
        edges = grown | edges


MNIST_C = {
    "shot_noise": MnistC("shot noise", f"Poisson, lambda {SHOT_LAMBDA}", shot_noise),
    "impulse_noise": MnistC("impulse noise", f"{IMPULSE_AMOUNT:.0%} salt and pepper",
                            impulse_noise),
    "glass_blur": MnistC("glass blur", "std 0.7, swaps of 1 pixel, 2 passes", glass_blur),
    "motion_blur": MnistC("motion blur", "radius 10, std 3, angle +-45 degrees", motion_blur),
    "shear": MnistC("shear", f"+-{SHEAR} rad", shear),
    "scale": MnistC("scale", f"x{SCALE}", scale),
    "rotate": MnistC("rotate", f"+-{ROTATE} rad", rotate),
    "brightness": MnistC("brightness", f"+{BRIGHTNESS}", brightness),
    "translate": MnistC("translate", f"+-{TRANSLATE} pixels on each axis", translate),
    "stripe": MnistC("stripe", "columns 0-6 and 21-27 inverted", stripe),
    "fog": MnistC("fog", "plasma x3, decay 1.4", fog),
    "spatter": MnistC("spatter", "mud drops, mask blur 1.5", spatter),
    "dotted_line": MnistC("dotted line", "width 2.3, 2 columns on / 2 off", dotted_line),
    "zigzag": MnistC("zigzag", "width 2.3, arms 2 pixels", zigzag),
    "canny_edges": MnistC("Canny edges", "std 1, thresholds 0.1 / 0.2", canny_edges),
}
