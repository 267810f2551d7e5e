"""Multiply-adds per weighted layer of a ``models.build_network`` network, per sample.

    dense       every product: Ho * Wo * O * C * KH * KW for a convolution, N * M for a
                linear layer
    effective   only the products of a non-zero input with a stored (non-zero) weight: what
                a network that skipped every zero would multiply

``effective`` is measured when inputs ``x`` are given (the mean over its samples of the
non-zero inputs each layer receives, each counted with the outputs it reaches: a
convolution's border inputs reach fewer), and otherwise estimated from the activation
before the layer: k_eval / n after k-winners, 1 after ReLU and for the network's input
(which has no zeros: a normalised image's background is not 0). Dense / effective bounds
the speed-up of any engine that skips zeros at the dense engine's speed; the inference
engine (models/inference.py) also skips the image background, which this does not count.
"""

import torch
from torch import nn

from models.dropconnect import DropConnect
from models.kwinners import KWinners, KWinners2d
from models.sparse_weights import SparseWeights


def _weighted(module):
    inner = module.module if isinstance(module, (SparseWeights, DropConnect)) else module
    return inner if isinstance(inner, (nn.Conv2d, nn.Linear)) else None


def _conv_reach(layer, height, width):
    """(H, W): how many outputs an input at each position reaches, per output channel."""
    kh, kw = layer.kernel_size
    rows = [min(kh, r + 1) - max(0, r - (height - kh)) for r in range(height)]
    cols = [min(kw, s + 1) - max(0, s - (width - kw)) for s in range(width)]
    return torch.tensor(rows, dtype=torch.float64)[:, None] * torch.tensor(cols)[None, :]


def _measured(layer, x):
    """The mean effective multiply-adds per sample of ``layer`` on its input batch ``x``."""
    nonzero = (x != 0).double()
    stored = (layer.weight.detach() != 0).double()
    if isinstance(layer, nn.Linear):  # input i meets the stored weights of column i
        return float((nonzero.reshape(len(x), -1) @ stored.sum(0)).mean())
    reach = _conv_reach(layer, *x.shape[2:])  # (H, W)
    per_channel = stored.sum((0, 2, 3)) / (layer.kernel_size[0] * layer.kernel_size[1])
    return float((nonzero * reach * per_channel.view(1, -1, 1, 1)).sum((1, 2, 3)).mean())


def _dense(layer, output_shape):
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features
    return int(output_shape[2] * output_shape[3] * layer.weight.numel())


def layer_multiply_adds(net, x=None, input_shape=None, batch_size=250):
    """[{"layer": name, "dense": int, "effective": float, "input_density": float}] for each
    conv and linear layer of ``net`` (an nn.Sequential in eval mode), per sample: measured
    on the inputs ``x`` (B, C, H, W), ``batch_size`` at a time, or without them estimated
    for inputs of ``input_shape`` (C, H, W) (see the module docstring)."""
    if x is None and input_shape is None:
        raise ValueError("layer_multiply_adds: pass the inputs x or their input_shape")
    layers = {name: _weighted(m) for name, m in net.named_children() if _weighted(m) is not None}
    sums = {name: [0.0, 0.0] for name in layers}  # effective, non-zero inputs (over samples)
    shapes, hooks = {}, []

    def measure(name):
        def hook(module, args, out):
            shapes[name] = (args[0][0].numel(), out.shape)
            if x is not None:
                sums[name][0] += _measured(layers[name], args[0]) * len(args[0])
                sums[name][1] += float((args[0] != 0).double().sum())
        return hook

    for name, module in net.named_children():
        if name in layers:
            hooks.append(module.register_forward_hook(measure(name)))
    try:
        with torch.no_grad():
            for batch in ([torch.zeros(1, *input_shape)] if x is None else x.split(batch_size)):
                net(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return _rows(net, layers, sums, shapes, None if x is None else len(x))


def _rows(net, layers, sums, shapes, samples):
    rows, density = [], 1.0  # the network's input has no zeros
    for name, module in net.named_children():
        if name in layers:
            size, out_shape = shapes[name]
            dense = _dense(layers[name], out_shape)
            if samples is None:
                weights = float((layers[name].weight != 0).double().mean())
                effective = dense * density * weights
            else:
                effective, density = sums[name][0] / samples, sums[name][1] / (samples * size)
            rows.append({"layer": name, "dense": dense, "effective": effective,
                         "input_density": density})
        elif isinstance(module, (KWinners, KWinners2d)):
            density = module.k_eval / module.n
        elif isinstance(module, nn.ReLU):
            density = 1.0
    return rows
