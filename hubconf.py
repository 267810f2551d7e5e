"""torch.hub entry points: the shipped seed-42 MNIST networks (models/pretrained/), one per name.

    net = torch.hub.load(REPO_DIR, "sparse_cnn2", source="local")   # in eval mode, on the CPU

Inputs: MNIST images normalised with mean 0.1307 and std 0.3081, (B, 1, 28, 28); outputs:
log-probabilities over the ten digits. ``pretrained=False`` gives the untrained network.
"""

import models.pretrained

dependencies = ["torch", "numba"]


def _layers(cfg):
    """The network of NetworkConfig ``cfg`` in words: its conv and hidden layers."""
    def winners(k, n):
        return "ReLU" if k is None else f"k={k} of {n}"
    parts = [f"conv {layer.channels} ({winners(layer.k, c * h * w)})"
             for layer, (c, h, w) in zip(cfg.conv, models.conv_output_sizes(cfg))]
    hidden = cfg.hidden
    weights = "" if hidden.density == 1.0 else f", {hidden.density:.0%} of the weights"
    parts.append(f"hidden {hidden.units} ({winners(hidden.k, hidden.units)}{weights})")
    return ", ".join(parts)


def _entry(name):
    """The hub entry point of the shipped network ``name``."""
    def load(pretrained=True):
        return models.load_pretrained(name, pretrained)
    info, cfg = models.pretrained_info(name), models.pretrained.pretrained_config(name)
    load.__name__ = load.__qualname__ = name
    load.__doc__ = (f"{info['label']}: {_layers(cfg)}; output {cfg.num_classes}. Seed "
                    f"{info['seed']}, {info['epoch'] + 1} epochs ({info['run']}).")
    return load


globals().update({name: _entry(name) for name in models.pretrained.available()})
