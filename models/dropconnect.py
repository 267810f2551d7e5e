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

    def __init__(self, module, p):
        super().__init__()
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"DropConnect wraps nn.Linear or nn.Conv2d, got {type(module)}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.module = module
        self.p = p

    def sample_weight(self):
        """W * M / (1 - p) with a fresh mask M ~ Bernoulli(1 - p), the weight's shape."""
        weight = self.module.weight
        keep = torch.rand(weight.shape, device=weight.device) >= self.p
        return weight * keep / (1.0 - self.p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return self.module(x)
        return functional_call(self.module, {"weight": self.sample_weight(),
                                             "bias": self.module.bias}, (x,))

    def extra_repr(self):
        return f"p={self.p}"
