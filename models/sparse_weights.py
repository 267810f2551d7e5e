"""Fixed sparse weights (paper section 2): a random connectivity mask chosen once.

Each output unit of the wrapped ``nn.Linear`` or ``nn.Conv2d`` keeps the same number of
incoming weights: ``round((1 - density) * fan_in)`` of them, at positions drawn uniformly at
random, are zero forever (fan_in = in_features, or in_channels * kh * kw for a conv). The bias
is never masked and there is no rescaling of the surviving weights.

Unlike DropConnect, which zeroes a *new* random subset of weights at every training step and
keeps all of them at test time, this mask is fixed at construction and the same at training
and inference: the network really is sparse, with ``density`` of the weights non-zero.

The zeros are kept exact by masking the weight's gradient in place as soon as backward has
accumulated it (a post-accumulate-grad hook). Any optimizer whose update is zero for a zero
weight with a zero gradient (SGD with momentum, weight decay and Nesterov; Adam; AdamW) then
leaves them at zero, and its state (momentum) at masked positions stays zero too, with no
per-step call from the training loop. ``rezero_weights()`` reapplies the mask for code that
edits the weights directly.
"""

import torch
from torch import nn


def random_mask(out_units, fan_in, zeros_per_unit, generator=None):
    """(out_units, fan_in) float mask with exactly ``zeros_per_unit`` zeros in each row."""
    scores = torch.rand(out_units, fan_in, generator=generator)
    zero_positions = scores.argsort(dim=1)[:, :zeros_per_unit]
    return torch.ones(out_units, fan_in).scatter_(1, zero_positions, 0.0)


class SparseWeights(nn.Module):
    """Wrap ``module`` (nn.Linear or nn.Conv2d) so that only ``density`` of its weights are used.

    ``.mask`` has the weight's shape, 1 where a weight may be non-zero. It is a buffer, so it is
    saved in ``state_dict`` and moves with ``.to(device)``.
    """

    def __init__(self, module, density, generator=None):
        super().__init__()
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"SparseWeights wraps nn.Linear or nn.Conv2d, got {type(module)}")
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        self.module = module
        self.density = density
        out_units = module.weight.shape[0]
        fan_in = module.weight[0].numel()
        zeros = int(round((1.0 - density) * fan_in))
        mask = random_mask(out_units, fan_in, zeros, generator).view_as(module.weight)
        self.register_buffer("mask", mask.to(module.weight))
        module.weight.register_post_accumulate_grad_hook(self._mask_gradient)
        self.rezero_weights()

    @torch.no_grad()
    def _mask_gradient(self, weight):
        weight.grad.mul_(self.mask)  # in place: no new (out, in) tensor per step

    @torch.no_grad()
    def rezero_weights(self):
        self.module.weight.mul_(self.mask)

    def forward(self, x):
        return self.module(x)

    def extra_repr(self):
        return f"density={self.density}, nonzero={int(self.mask.sum())}/{self.mask.numel()}"
