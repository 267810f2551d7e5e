"""What the analysis measures inside a trained network, as pure functions of tensors.

A *unit* is an output unit of a layer: a row of a Linear weight, a filter of a Conv2d.

    weight norm       |w_i|_2 over the unit's incoming weights; its non-zero fan-in
    angle             theta = arccos(w_i . x / (|w_i| |x|)) between a unit's weight vector and
                      an input it receives (a conv filter: the 5x5 patch under the pooling
                      window's maximum), in degrees; 90 for a zero input
    winner overlap    |W(clean) & W(noisy)| / |W(clean)| per sample, W = the units a layer
                      passes on: its k winners, or the active (> 0) units of a ReLU
    relative change   |y(noisy) - y(clean)| / |y(clean)| of the layer's output per sample
    unrelated overlap winner overlap between two different clean test images: of another digit,
                      or of the same digit (the chance level real inputs set, beside the
                      uniform one of section 3)

Under i.i.d. input noise of variance s^2 a unit's pre-activation changes by w . e, whose
variance is s^2 |w|^2: the weight norm sets how much noise a unit passes on.
"""

import math

import torch
from scipy.stats import hypergeom


def unit_norms(weight):
    """(L2 norm, non-zero fan-in) of each output unit of a (out, ...) weight tensor."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    return rows.norm(dim=1), (rows != 0).sum(dim=1)


def cosines(dots, weight_norms, input_norms):
    """cos(theta) = w.x / (|w| |x|): ``dots`` (..., units), ``weight_norms`` (units,),
    ``input_norms`` broadcastable to ``dots``; 0 where either vector is zero."""
    denominator = weight_norms * input_norms
    return torch.where(denominator > 0, dots / denominator.clamp_min(1e-30),
                       torch.zeros_like(dots)).clamp(-1.0, 1.0)


def degrees(cos):
    return torch.rad2deg(torch.arccos(cos))


class UnitStats:
    """Per-unit running mean, min and max of a quantity over samples, optionally masked."""

    def __init__(self, units):
        self.sum = torch.zeros(units, dtype=torch.float64)
        self.count = torch.zeros(units, dtype=torch.long)
        self.min = torch.full((units,), math.inf, dtype=torch.float64)
        self.max = torch.full((units,), -math.inf, dtype=torch.float64)

    def add(self, values, mask=None):
        """``values`` (samples, units); only the entries where ``mask`` is True count."""
        values = values.double()
        mask = torch.ones_like(values, dtype=torch.bool) if mask is None else mask
        self.sum += torch.where(mask, values, 0.0).sum(0)
        self.count += mask.sum(0)
        self.min = torch.minimum(self.min, torch.where(mask, values, math.inf).amin(0))
        self.max = torch.maximum(self.max, torch.where(mask, values, -math.inf).amax(0))

    def mean(self):
        return torch.where(self.count > 0, self.sum / self.count.clamp_min(1), math.nan)


def winner_overlap(clean, noisy):
    """Per sample |W_clean & W_noisy| / |W_clean| of two (samples, units) bool winner masks
    (nan for a sample with no clean winner)."""
    both = (clean & noisy).sum(1).double()
    size = clean.sum(1).double()
    return torch.where(size > 0, both / size.clamp_min(1), math.nan)


def relative_change(clean, noisy):
    """Per sample |noisy - clean| / |clean| of two (samples, ...) outputs (nan for a zero clean
    output)."""
    clean, noisy = clean.flatten(1).double(), noisy.flatten(1).double()
    size = clean.norm(dim=1)
    return torch.where(size > 0, (noisy - clean).norm(dim=1) / size.clamp_min(1e-30), math.nan)


def chance_match_probability(n, a, theta):
    """P(a random set of ``a`` of ``n`` units shares >= ``theta`` with a fixed set of ``a``):
    the hypergeometric tail of section 3 (s = a), the chance that an unrelated input's winners
    'match' a clean pattern at that threshold."""
    return float(hypergeom.sf(theta - 1, n, a, a))


def partners(labels, same):
    """For each sample of a batch, the index of its partner: the next sample (cyclically) with
    the same label (``same``) or a different one; -1 where the batch has none."""
    n = len(labels)
    out = torch.full((n,), -1, dtype=torch.long)
    for i in range(n):
        for step in range(1, n):
            j = (i + step) % n
            if bool(labels[j] == labels[i]) == same:
                out[i] = j
                break
    return out


def partner_overlap(winners, labels, same):
    """winner_overlap of each sample's (samples, units) winners with its partner's (nan for a
    sample without a partner)."""
    index = partners(labels, same)
    has = index >= 0
    overlap = torch.full((len(labels),), math.nan, dtype=torch.float64)
    overlap[has] = winner_overlap(winners[has], winners[index[has]])
    return overlap
