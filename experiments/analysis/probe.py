"""Look inside a network of models.build_network: its layers, and what each computes on a batch.

A probed *layer* is a weight module (conv_i, the hidden Linear, the output Linear) with what
follows it up to its activation: conv -> pool -> k-winners or ReLU; Linear -> [BatchNorm]
-> [Dropout] -> k-winners or ReLU; the output Linear has none.
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models import DropConnect, KWinners, KWinners2d, SparseWeights

ACTIVATIONS = (KWinners, KWinners2d, nn.ReLU)


@dataclass
class Layer:
    name: str  # conv1, conv2, hidden, output
    weights: nn.Module  # the plain nn.Conv2d / nn.Linear (unwrapped)
    modules: list  # the Sequential's children from the weights to the activation, in order
    activation: Optional[nn.Module]  # KWinners(2d), nn.ReLU, or None (the output layer)

    @property
    def kind(self):
        if self.activation is None:
            return "output"
        return "k-winners" if isinstance(self.activation, (KWinners, KWinners2d)) else "ReLU"


def unwrap(module):
    return module.module if isinstance(module, (SparseWeights, DropConnect)) else module


def layers_of(net):
    """The probed layers of ``net``, in order."""
    layers, current = [], None
    for name, module in net.named_children():
        if isinstance(unwrap(module), (nn.Conv2d, nn.Linear)):
            label = "output" if name == "output" else ("hidden" if name == "linear" else name)
            current = Layer(label, unwrap(module), [module], None)
            layers.append(current)
        elif current is not None and current.activation is None and name != "log_softmax":
            current.modules.append(module)
            if isinstance(module, ACTIVATIONS):
                current.activation = module
    return layers


@dataclass
class Seen:
    """What one layer computed on a batch."""
    input: torch.Tensor  # into the weights, (B, C, H, W) or (B, n)
    dots: torch.Tensor  # w . x per unit, at the pooled positions for a conv: (B, units, ...)
    patch_norms: Optional[torch.Tensor]  # conv: |patch| under each pooled maximum, like dots
    output: torch.Tensor  # after the activation (the output layer: its logits)
    winners: Optional[torch.Tensor]  # bool, like output: the units passed on (None: output)


@torch.inference_mode()
def run_layers(net, x):
    """{layer name: Seen} for input batch ``x``, the network in eval mode."""
    net.eval()
    seen = {}
    for layer in layers_of(net):
        if isinstance(layer.weights, nn.Linear) and x.dim() > 2:
            x = x.flatten(1)
        seen[layer.name] = _run_layer(layer, x)
        x = seen[layer.name].output
    return seen


def _run_layer(layer, x):
    first = layer.modules[0](x)
    bias = layer.weights.bias
    if isinstance(layer.weights, nn.Conv2d):
        pooled, where = F.max_pool2d(first, 2, return_indices=True)
        dots = pooled - bias.view(1, -1, 1, 1)
        patch_norms = _patch_norms(x, layer.weights.kernel_size).flatten(1)  # (B, H' * W')
        patch_norms = patch_norms.gather(1, where.flatten(1)).view_as(where)
    else:
        dots, patch_norms = first - bias, None
    out = first
    for module in layer.modules[1:]:
        out = module(out)
    winners = None
    if layer.activation is not None:
        winners = out > 0 if isinstance(layer.activation, nn.ReLU) else out != 0
    return Seen(x, dots, patch_norms, out, winners)


def _patch_norms(x, kernel_size):
    """|patch| of every kernel-sized patch of ``x`` (B, C, H, W) -> (B, H', W'): the square
    root of a convolution of x^2 with ones (F.unfold is many times slower here)."""
    ones = x.new_ones(1, x.shape[1], *kernel_size)
    return F.conv2d(x.square(), ones).clamp_min(0.0).sqrt()[:, 0]
