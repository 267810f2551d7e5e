"""Signs of gradient masking, per image, from the gradient an attack follows (Athalye et al.,
2018; Carlini et al., 2019). On the margin loss L = max_{j != y} z_j - z_y (its float32
differences resolve where the cross-entropy of a confident image underflows):

    grad_norm    |g|_2, g the input gradient (the network's own backward pass, or a
                 surrogate's): exactly 0 where nothing flows back
    fd_cos@h     cos(g, g_h), g_h the central finite differences of the forward pass,
                 (L(x + h e_i) - L(x - h e_i)) / (x_i^+ - x_i^-), clipped to the box: is g the
                 derivative of what the network computes, at the scale h? (0 when either is 0)
    rise         max_a L(x + a d) - L(x), d = sign(g), a on ``points`` steps from 0 to
                 ``reach``: <= 0 (flat) when the gradient's direction leads nowhere
    roughness    the curve's total variation over its range: 1 when L rises monotonically,
                 large when it zigzags (a jagged, shattered landscape)

The finite differences cost 2 * 784 forward passes per image and step h, the curve ``points``.
"""

import math

import torch

from experiments.robust.attacks import input_gradient, margin


@torch.no_grad()
def finite_difference(model, x, y, h):
    """(B, C, H, W) central differences of the margin loss per pixel (box-clipped)."""
    grads = []
    for image, label in zip(x, y):
        eye = torch.eye(image.numel(), device=x.device).view(-1, *image.shape)  # (P, C, H, W)
        up, down = (image + h * eye).clamp(0, 1), (image - h * eye).clamp(0, 1)
        width = (up - down).flatten(1).sum(1)  # (P,): 2h, or less where the box clips
        labels = label.repeat(len(eye))
        diff = margin(model(up), labels) - margin(model(down), labels)
        grads.append((diff / width.clamp(min=1e-12)).view_as(image))
    return torch.stack(grads)


def cosine(a, b):
    """(B,) cosine of the flattened rows; 0 where either row is zero."""
    a, b = a.flatten(1), b.flatten(1)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, (a * b).sum(1) / norms.clamp(min=1e-30), torch.zeros_like(norms))


@torch.no_grad()
def loss_curve(model, x, y, direction, reach, points):
    """(B, points) margin loss at x + a d, a = 0 .. reach, clipped to the box."""
    steps = torch.linspace(0, reach, points, device=x.device)
    return torch.stack([margin(model((x + a * direction).clamp(0, 1)), y) for a in steps], 1)


def roughness(curve):
    """(B,) total variation over range of each curve (1 for a monotone one; inf if flat)."""
    variation = curve.diff(dim=1).abs().sum(1)
    span = curve.amax(1) - curve.amin(1)
    return torch.where(span > 0, variation / span.clamp(min=1e-30),
                       torch.full_like(span, math.inf))


def gradient_stats(model, x, y, fd, reach, points):
    """Per image (a dict of (B,) tensors) for the gradient now in place (wrap the call in
    models.surrogate_gradients for a surrogate's); ``fd`` maps h to finite differences, and
    the loss curve along sign(g) (B, points)."""
    _, grad = input_gradient(model, x, y, "margin")
    curve = loss_curve(model, x, y, grad.sign(), reach, points)
    stats = {"grad_norm": grad.flatten(1).norm(dim=1),
             **{f"fd_cos@{h:g}": cosine(grad, g) for h, g in fd.items()},
             "rise": curve.amax(1) - curve[:, 0], "roughness": roughness(curve)}
    return stats, curve

