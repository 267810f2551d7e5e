"""The L0 threat model, the adversarial version of the paper's pixel noise: an attack may set
at most t pixels of each image to any values in [0, 1]; the paper's noise sets exactly t
random pixels to 0.7469 (data/noise.py), a random point of the same set.

Sparse-RS (Croce et al., 2022), gradient-free random search over which t pixels change and to
what: start from t random pixels set to random extremes (0 or 1); each query swaps a random
share of them for as many unchanged pixels, also set to random extremes, and keeps the
candidate when the margin loss grows (or it is misclassified). The share follows Square's
schedule (attacks.square_fraction) from ``p_init`` = 0.3 of t, at least one pixel.

Pixels are the H x W positions (all C channels of a position change together); with MNIST's
one channel a pixel is one value. ``changed_pixels`` counts what an x' changed.
"""

import math

import torch

from experiments.robust.attacks import random_search, square_fraction


def changed_pixels(adv, x):
    """(B,) the number of H x W positions where ``adv`` differs from ``x`` in any channel."""
    return (adv != x).any(dim=1).flatten(1).sum(1)


def check_pixels(adv, x, pixels):
    """Raise unless every x' of ``adv`` is in [0, 1] and changes at most ``pixels`` pixels;
    return the largest number changed."""
    changed = changed_pixels(adv, x)
    if (changed > pixels).any() or adv.min() < 0 or adv.max() > 1:
        raise RuntimeError(f"an L0 attack with budget {pixels} changed "
                           f"{int(changed.max())} pixels or left the [0, 1] box")
    return int(changed.max()) if len(x) else 0


def _random_rows(scores, count):
    """(B, count) column indices of the ``count`` largest ``scores`` (B, n) per row."""
    return scores.topk(count, dim=1, sorted=False).indices


def _place(x, where, values):
    """``x`` (B, C, H, W) with the pixels ``where`` (B, t) set to ``values`` (B, t), every
    channel alike."""
    b, c = x.shape[:2]
    flat = x.flatten(2).clone()  # (B, C, H W)
    index = where.unsqueeze(1).expand(b, c, -1)
    return flat.scatter(2, index, values.unsqueeze(1).expand(b, c, -1)).view_as(x)


@torch.no_grad()
def sparse_rs(model, x, y, pixels, queries, loss="margin", generator=None, p_init=0.3):
    """Sparse-RS with ``queries`` model queries per image; returns x' (see the docstring)."""
    b, n = len(x), x[0, 0].numel()
    where = _random_rows(torch.rand(b, n, generator=generator), pixels).to(x.device)  # (B, t)
    values = torch.randint(0, 2, (b, pixels), generator=generator).to(x)

    def propose(adv, todo, query):
        swap = max(math.ceil(square_fraction(query, queries, p_init) * pixels), 1)
        new_where, new_values = _swap(where[todo], values[todo], n, swap, generator)

        def commit(kept, keep):
            where[kept], values[kept] = new_where[keep], new_values[keep]
        return _place(x[todo], new_where, new_values), commit

    return random_search(model, x, y, _place(x, where, values), queries, loss, propose)


def _swap(where, values, n, swap, generator):
    """``swap`` of each row's changed pixels ``where`` (B, t) traded for as many unchanged
    ones with new random extremes: (new where, new values)."""
    b, t = where.shape
    slots = _random_rows(torch.rand(b, t, generator=generator), swap).to(where.device)
    scores = torch.rand(b, n, generator=generator).to(where.device)
    scores.scatter_(1, where, -1.0)  # never pick a pixel that is already changed
    fresh = _random_rows(scores, swap)
    new_where = where.scatter(1, slots, fresh)
    new_values = values.scatter(1, slots, torch.randint(0, 2, (b, swap),
                                                        generator=generator).to(values))
    return new_where, new_values
