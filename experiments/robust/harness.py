"""What every attack stands on: the test images and the network seen from the pixel box, the
threat model's projection and its check, and a guard that an attack leaves the network as it
found it.

Threat model (L-inf): an attack may present x' with |x' - x|_inf <= eps and 0 <= x' <= 1, i.e.
x' in [lo, hi] with lo = max(x - eps, 0), hi = min(x + eps, 1), computed once per image; the
network sees normalise(x'). ``project`` clamps a point into [lo, hi], so every attack's output
satisfies the constraint exactly, and ``check_constraints`` verifies it on what comes back.
"""

import dataclasses
import functools
import json
import math
from contextlib import contextmanager

import torch
from torch import nn

from data import DataConfig, load_dataset
from data.mnist import normalize
from experiments.core.config import from_dict, to_dict


class PixelModel(nn.Module):
    """``net`` on MNIST pixels in [0, 1]: net(normalise(x)), its log-probabilities (B, 10)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # (B, 1, 28, 28) in [0, 1]
        return self.net(normalize(x))


def test_images(data):
    """(pixels (N, 1, 28, 28) in [0, 1], labels (N,)): the first ``data.test_limit`` (or all)
    test images of DataConfig ``data``, read once per process whatever the limits, so that the
    jobs of a local run share them (read-only). No training image is prepared."""
    whole = dataclasses.replace(data, train_limit=1, test_limit=None)
    pixels, labels = _test_images(json.dumps(to_dict(whole), sort_keys=True))
    return pixels[:data.test_limit], labels[:data.test_limit]


@functools.lru_cache(maxsize=1)
def _test_images(data):
    dataset = load_dataset(from_dict(DataConfig, json.loads(data), "data"))
    return dataset.test_pixels, dataset.test_y


def bounds(x, eps):
    """(lo, hi): max(x - eps, 0) and min(x + eps, 1), computed in float64 and rounded inwards
    to x's dtype, so that every x' in [lo, hi] has |x' - x| <= eps exactly, not just up to
    float32 rounding (x - eps in float32 can land one unit in the last place outside)."""
    wide = x.double()
    return (_round_inwards((wide - eps).clamp(min=0.0), x.dtype, up=True),
            _round_inwards((wide + eps).clamp(max=1.0), x.dtype, up=False))


def _round_inwards(v, dtype, up):
    """``v`` (float64) in ``dtype``, rounded up (``up``) or down where it is not exact."""
    r = v.to(dtype)
    outside = r.double() < v if up else r.double() > v
    towards = torch.full_like(r, math.inf if up else -math.inf)
    return torch.where(outside, torch.nextafter(r, towards), r)


def project(z, lo, hi):
    """The nearest point of [lo, hi] to ``z`` (elementwise clamp: L-inf ball and box at once)."""
    return torch.minimum(torch.maximum(z, lo), hi)


def check_constraints(adv, x, eps):
    """Raise unless every x' of ``adv`` is in [0, 1] with |x' - x| <= eps (in float64, exact for
    float32 values); return the largest |x' - x|."""
    distance = (adv.double() - x.double()).abs()
    if not (distance <= eps).all() or adv.min() < 0 or adv.max() > 1:
        raise RuntimeError(f"an attack at eps {eps} left the L-inf ball or the [0, 1] box")
    return float(distance.max()) if len(x) else 0.0


@contextmanager
def frozen(model):
    """Run the block with ``model`` in eval mode and raise if it changed any buffer (duty
    cycles, boost strength, batch-norm statistics) or parameter, or left eval mode."""
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    yield model
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed or any(m.training for m in model.modules()):
        raise RuntimeError(f"an attack changed the network: {', '.join(changed) or 'train mode'}")


@torch.no_grad()
def predict(model, x, batch_size):
    """Predicted classes (N,) of ``x`` (N, ...) by plain forward passes in batches."""
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
