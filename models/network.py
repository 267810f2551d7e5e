"""The paper's CNNs as one builder: conv blocks, a hidden block, a dense output layer.

    conv block   Conv2d(5x5, stride 1, no padding; models/conv.py's sparse-gradient backward;
                 DropConnect when dropconnect > 0)
                 -> [BatchNorm2d(affine=False)] -> MaxPool2x2 -> KWinners2d (k of C*H*W),
                 or ReLU when k is None
    hidden block Flatten -> Linear (SparseWeights when density < 1, DropConnect when
                 dropconnect > 0) -> [BatchNorm1d(affine=False)] -> [Dropout]
                 -> KWinners (k of units), or ReLU when k is None
    output       Linear -> log-softmax (train with NLL loss)

k = None means a dense layer (plain ReLU). Sizes for MNIST: 28 -> conv 24 -> pool 12 -> conv 8
-> pool 4; for Speech Commands: 32 -> 28 -> 14 -> 10 -> 5.
"""

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from torch import nn

from models.conv import Conv2d
from models.dropconnect import DropConnect
from models.kwinners import KWinners, KWinners2d
from models.pooling import MaxPool2x2
from models.sparse_weights import SparseWeights


@dataclass
class ConvLayerConfig:
    channels: int
    k: Optional[int] = None  # winners out of C*H*W after pooling; None: ReLU
    dropconnect: float = 0.0  # DropConnect probability of the conv's weights (0: none)


@dataclass
class HiddenLayerConfig:
    units: int
    k: Optional[int] = None  # winners out of `units`; None: ReLU
    density: float = 1.0  # fraction of non-zero weights in the hidden Linear
    dropconnect: float = 0.0  # DropConnect probability of the hidden Linear's weights
    dropconnect_per_sample: bool = False  # a DropConnect mask per sample, not per batch


@dataclass
class NetworkConfig:
    conv: list[ConvLayerConfig] = field(default_factory=list)
    hidden: HiddenLayerConfig = field(default_factory=lambda: HiddenLayerConfig(1000))
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    num_classes: int = 10
    kernel_size: int = 5
    batch_norm: bool = False
    dropout: float = 0.0  # dropout on the hidden layer's pre-activations (before k-winners)
    k_inference_factor: float = 1.0
    boost_strength: float = 0.0
    boost_strength_factor: float = 1.0
    duty_cycle_period: int = 1000

    def check(self):
        check_network_config(self)


def network_config(fields):
    """The checked NetworkConfig of a plain mapping (a YAML block, or ``dataclasses.asdict``
    of a NetworkConfig): ``conv`` a list of mappings, ``hidden`` a mapping, ``input_shape``
    a list or tuple. Raises ValueError naming the dotted key ("hidden.unitz: unknown key",
    "conv[0].channels: missing required key") or the impossible value (check_network_config).
    """
    fields = _fields_of(NetworkConfig, fields, "")
    if "conv" in fields:
        if not isinstance(fields["conv"], (list, tuple)):
            raise ValueError(f"conv: expected a list of layers, got {fields['conv']!r}")
        fields["conv"] = [ConvLayerConfig(**_fields_of(ConvLayerConfig, layer, f"conv[{i}]"))
                          for i, layer in enumerate(fields["conv"])]
    if "hidden" in fields:
        fields["hidden"] = HiddenLayerConfig(**_fields_of(HiddenLayerConfig, fields["hidden"],
                                                          "hidden"))
    if "input_shape" in fields:
        fields["input_shape"] = tuple(fields["input_shape"])
    cfg = NetworkConfig(**fields)
    check_network_config(cfg)
    return cfg


def _fields_of(cls, mapping, where):
    """A copy of ``mapping`` after checking it names only fields of dataclass ``cls``, and
    all of its required ones; ``where`` is its dotted key ("" at the top)."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{where or 'network'}: expected a mapping, got {mapping!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for name in mapping:
        if name not in known:
            raise ValueError(f"{_key(where, name)}: unknown key (valid keys: {', '.join(known)})")
    for name, f in known.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in mapping:
            raise ValueError(f"{_key(where, name)}: missing required key")
    return dict(mapping)


def _key(where, name):
    return f"{where}.{name}" if where else name


def conv_output_sizes(cfg):
    """[(C, H, W)] after each conv block (conv then 2x2 max-pool)."""
    _, h, w = cfg.input_shape
    sizes = []
    for layer in cfg.conv:
        h, w = (h - cfg.kernel_size + 1) // 2, (w - cfg.kernel_size + 1) // 2
        sizes.append((layer.channels, h, w))
    return sizes


def check_network_config(cfg):
    """Raise ValueError naming the key (e.g. 'conv[1].k') for an impossible network."""
    for i, (layer, (c, h, w)) in enumerate(zip(cfg.conv, conv_output_sizes(cfg))):
        if h < 1 or w < 1:
            raise ValueError(f"conv[{i}]: input too small, the block output would be {h}x{w}")
        if layer.channels < 1:
            raise ValueError(f"conv[{i}].channels: must be >= 1, got {layer.channels}")
        if layer.k is not None and not 0 < layer.k <= c * h * w:
            raise ValueError(f"conv[{i}].k: must be in 1..{c * h * w} (n = {c}x{h}x{w}), "
                             f"got {layer.k}")
        _check_probability(f"conv[{i}].dropconnect", layer.dropconnect)
    hidden = cfg.hidden
    if hidden.units < 1:
        raise ValueError(f"hidden.units: must be >= 1, got {hidden.units}")
    if hidden.k is not None and not 0 < hidden.k <= hidden.units:
        raise ValueError(f"hidden.k: must be in 1..{hidden.units} (n = units), got {hidden.k}")
    if not 0.0 < hidden.density <= 1.0:
        raise ValueError(f"hidden.density: must be in (0, 1], got {hidden.density}")
    _check_probability("hidden.dropconnect", hidden.dropconnect)
    if hidden.dropconnect_per_sample and hidden.dropconnect == 0.0:
        raise ValueError("hidden.dropconnect_per_sample: needs hidden.dropconnect > 0")
    if hidden.density < 1.0 and hidden.dropconnect > 0.0:
        raise ValueError("hidden.dropconnect: a layer has fixed sparse weights (density < 1) "
                         "or DropConnect, not both")
    _check_probability("dropout", cfg.dropout)
    if cfg.k_inference_factor <= 0 or cfg.boost_strength < 0:
        raise ValueError("k_inference_factor must be > 0 and boost_strength >= 0")
    if not 0.0 <= cfg.boost_strength_factor <= 1.0:
        raise ValueError(f"boost_strength_factor: must be in [0, 1], "
                         f"got {cfg.boost_strength_factor}")
    if cfg.duty_cycle_period < 1:
        raise ValueError(f"duty_cycle_period: must be >= 1, got {cfg.duty_cycle_period}")


def _check_probability(key, p):
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{key}: must be in [0, 1), got {p}")


def _weights(module, density=1.0, dropconnect=0.0, per_sample=False):
    """``module`` with fixed sparse weights or DropConnect when asked for."""
    if density < 1.0:
        return SparseWeights(module, density)
    if dropconnect > 0.0:
        return DropConnect(module, dropconnect, per_sample)
    return module


def _winners(cfg, k, n, channels=None):
    kw = dict(k_inference_factor=cfg.k_inference_factor, boost_strength=cfg.boost_strength,
              boost_strength_factor=cfg.boost_strength_factor,
              duty_cycle_period=cfg.duty_cycle_period)
    if channels is None:
        return KWinners(n, k, **kw)
    return KWinners2d(channels, k, n=n, **kw)


def build_network(cfg):
    """nn.Sequential for ``cfg``; uses the global torch RNG for weights and sparse masks."""
    check_network_config(cfg)
    layers, in_channels = [], cfg.input_shape[0]
    for i, (layer, (c, h, w)) in enumerate(zip(cfg.conv, conv_output_sizes(cfg)), start=1):
        conv = Conv2d(in_channels, c, cfg.kernel_size)
        layers.append((f"conv{i}", _weights(conv, dropconnect=layer.dropconnect)))
        if cfg.batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm2d(c, affine=False)))
        layers.append((f"pool{i}", MaxPool2x2()))
        if layer.k is None:
            layers.append((f"relu{i}", nn.ReLU()))
        else:
            layers.append((f"kwinners{i}", _winners(cfg, layer.k, c * h * w, channels=c)))
        in_channels = c
    c, h, w = conv_output_sizes(cfg)[-1] if cfg.conv else cfg.input_shape
    hidden = cfg.hidden
    linear = _weights(nn.Linear(c * h * w, hidden.units), hidden.density, hidden.dropconnect,
                      hidden.dropconnect_per_sample)
    layers += [("flatten", nn.Flatten()), ("linear", linear)]
    if cfg.batch_norm:
        layers.append(("bn", nn.BatchNorm1d(hidden.units, affine=False)))
    if cfg.dropout > 0:
        layers.append(("dropout", nn.Dropout(cfg.dropout)))
    if hidden.k is None:
        layers.append(("relu", nn.ReLU()))
    else:
        layers.append(("kwinners", _winners(cfg, hidden.k, hidden.units)))
    layers += [("output", nn.Linear(hidden.units, cfg.num_classes)),
               ("log_softmax", nn.LogSoftmax(dim=1))]
    return nn.Sequential(OrderedDict(layers))


def count_parameters(model):
    """(total, non-zero) parameter counts, biases included; masked weights count as zeros."""
    total = sum(p.numel() for p in model.parameters())
    masked = sum(int((m.mask == 0).sum()) for m in model.modules()
                 if isinstance(m, SparseWeights))
    return total, total - masked


def rezero_weights(model):
    """Reapply every SparseWeights mask, for code that edits weights directly (training needs
    no call: SparseWeights masks the gradient, so optimizer steps keep the zeros)."""
    for m in model.modules():
        if isinstance(m, SparseWeights):
            m.rezero_weights()


def update_boost_strength(model):
    """beta <- beta * factor in every k-winners layer (the training loop's after-epoch hook)."""
    for m in model.modules():
        if isinstance(m, (KWinners, KWinners2d)):
            m.update_boost_strength()


def boost_strength(model):
    """The current beta of the first k-winners layer, or None for a dense network."""
    for m in model.modules():
        if isinstance(m, (KWinners, KWinners2d)):
            return m.boost_strength.item()
    return None
