"""DropConnect (Wan et al., 2013): a fresh random subset of a layer's weights dropped at every
training step, all of them used at test time.

``DropConnect(module, p)`` wraps an ``nn.Linear`` or ``nn.Conv2d``. In training mode every
forward pass draws a new Bernoulli mask M (each weight kept with probability 1 - p, one mask
per forward pass, shared by the samples of the batch) from torch's global RNG and uses

    W' = W * M / (1 - p)          ("inverted" DropConnect, as inverted dropout)

so that E[W'] = W: the layer's expected pre-activation during training equals the one the
plain layer computes in eval mode, which is then ``module(x)`` unchanged (no moment matching
as in the paper's inference rule: the same convention as dropout, and what makes eval exact).
The gradient reaches the kept weights only (dW = M / (1 - p) times the plain gradient).

With ``per_sample`` (nn.Linear only) every sample of the batch draws its own mask, as in
Wan et al.'s definition: y_b = (W * M_b / (1 - p)) x_b + bias. That costs a mask and a
product per sample (B x out x in values: about a second per batch-64 step on one core for a
1024 -> 700 layer), so the default shares one mask per forward pass.

Unlike SparseWeights, nothing is fixed: the network is dense at test time and every weight
trains. DropConnect with p = 0.7 keeps 30% of the weights at each step, the density of the
paper's sparse hidden layers.
"""

import torch
from torch import nn
from torch.func import functional_call


class DropConnect(nn.Module):
    """Wrap ``module`` (nn.Linear or nn.Conv2d): drop each weight with probability ``p`` in
    training. The wrapped weight is ``.module.weight``, as in SparseWeights."""

    def __init__(self, module, p, per_sample=False):
        super().__init__()
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"DropConnect wraps nn.Linear or nn.Conv2d, got {type(module)}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        if per_sample and not isinstance(module, nn.Linear):
            raise ValueError("DropConnect: per-sample masks are for nn.Linear only")
        self.module = module
        self.p = p
        self.per_sample = per_sample

    def sample_weight(self):
        """W * M / (1 - p) with a fresh mask M ~ Bernoulli(1 - p), the weight's shape."""
        weight = self.module.weight
        keep = torch.rand(weight.shape, device=weight.device) >= self.p
        return weight * keep / (1.0 - self.p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return self.module(x)
        if self.per_sample:
            return self._per_sample(x)
        return functional_call(self.module, {"weight": self.sample_weight(),
                                             "bias": self.module.bias}, (x,))

    def _per_sample(self, x):  # x (B, in) -> (B, out), a fresh mask for every sample
        weight = self.module.weight  # (out, in)
        keep = torch.rand((x.shape[0], *weight.shape), device=weight.device) >= self.p
        y = torch.bmm(weight * keep / (1.0 - self.p), x.unsqueeze(2)).squeeze(2)
        return y if self.module.bias is None else y + self.module.bias

    def extra_repr(self):
        return f"p={self.p}" + (", per_sample=True" if self.per_sample else "")
