"""``sparse_inference(net)``: an eval-only copy of a network that skips what its sparsity
makes zero, on the CPU.

For a network of ``models.build_network`` in eval mode, it returns an ``nn.Module`` with the
same inputs and outputs (log-probabilities) whose CPU path runs each block (conv, [BatchNorm],
pool, activation; or linear, [BatchNorm], [dropout], activation) as one computation:

- BatchNorm (eval: a fixed affine map) is folded into the weights before it; dropout is
  the identity.
- A convolution and its 2x2 max pooling run from the non-background inputs alone
  (models/kernels/sparse_conv.py): a network's one-channel first layer always (register
  blocks that skip an image's background, 82% of a clean MNIST digit's pixels, and beat
  oneDNN at any density), a layer behind k-winners or ReLU when its inputs are few (Sparse
  CNN-2's second layer: 600 of 4,608 non-zero; above ``SPARSE_INPUT_MAX``, oneDNN's
  ``F.conv2d`` and the exact pooling kernel). Behind a conv layer, k-winners runs inside the
  conv kernel, a sample at a time; a first layer and the conv layer behind it, both with
  k-winners, run as one kernel (``SparseInference.pair_convs``).
- A linear layer runs whichever of three ways should take least time (its products counted
  per batch, ``sparse_linear.costs``, at each way's measured rate, ``LINEAR_RATES``): the
  rows of W.T of each sample's non-zero inputs (after k-winners), the stored non-zero
  weights alone (fixed sparse weights, for batches of 32 and more), or MKL (``F.linear``).
- k-winners runs the layer's own CPU kernel (models/kernels/kwinners.py) with k_eval and
  the boost of the frozen duty cycles, computed once: the same winners as the model's for
  the same pre-activations, exact ties at the k-th place going to the lowest index.

The products are the model's, added in other orders, so pre-activations agree to float32
rounding, not bit for bit: a unit whose boosted score ties the k-th within rounding may win
in one and lose in the other, and a prediction whose two best logits tie within rounding may
differ (tests/test_inference.py; docs/performance.md counts them on the test sets). Other
devices and dtypes, ``MODELS_BACKEND=torch``, tracing and compiling get the model itself.

The weights are copied when the engine is made: build a new one after changing them.
"""

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import backend, kernels
from models.dropconnect import DropConnect
from models.kwinners import KWinners, KWinners2d
from models.pooling import MaxPool2x2
from models.sparse_weights import SparseWeights

SPARSE_INPUT_MAX = 0.25  # several channels: above this share of non-zero inputs, oneDNN
SPARSE_WEIGHTS_MAX = 0.5  # linear layers: above this share of non-zero weights, never the
# stored-weights kernel (a dense layer goes to MKL or the gather, however close the counts)
# Products per microsecond of each way to run a linear layer, from the batch size given on:
# the shipped networks' linear layers, 1 thread, AVX-512 (MKL reaches full speed only on
# large batches; the gather kernel reads its rows from L2 or memory).
LINEAR_RATES = {"dense": ((1, 11e3), (16, 31e3), (64, 47e3)),
                "gather": ((1, 8e3), (16, 14e3)),
                "sparse_weights": ((kernels.sparse_linear.TILE, 50e3),)}


def sparse_inference(net):
    """The eval-only engine of ``net`` (a ``models.build_network`` network in eval mode)."""
    return SparseInference(net)


class SparseInference(nn.Module):
    """Runs ``net``'s blocks through the sparse kernels on float32 CPU tensors, and ``net``
    itself elsewhere. Eval-only: ``train()`` raises."""

    def __init__(self, net):
        super().__init__()
        if net.training:
            raise ValueError("sparse_inference: the network is in training mode; call "
                             "net.eval() first (the engine only evaluates)")
        self.blocks = _blocks(net)
        self.reference = net
        self.pair_convs = True  # a first conv block and the next in one kernel, where they can
        super().train(False)

    def train(self, mode=True):
        if mode:
            raise RuntimeError("a sparse_inference engine is eval-only; train the network "
                               "itself and make a new engine")
        return super().train(False)

    def forward(self, x):  # (B, C, H, W) -> (B, classes) log-probabilities
        if self.reference.training:
            raise ValueError("sparse_inference: the network was put back in training mode")
        if not (kernels.HAVE_NUMBA and backend.uses_cpu_kernel(x)) or len(x) == 0:
            return self.reference(x)
        return self._run(x, None)

    def layer_outputs(self, x):
        """Each block's output (its activation, or the log-probabilities last), by the name
        of the network's layer that ends the block."""
        outputs = OrderedDict()
        self._run(x, outputs)
        return outputs

    @torch.no_grad()
    def _run(self, x, outputs):
        h, density, i = x.contiguous(), None, 0
        while i < len(self.blocks):
            block = self.blocks[i]
            after = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
            if outputs is None and self.pair_convs and block.pairs_with(after, h):
                h, block = block.pair(after, h), after  # one kernel for both
                i += 1
            else:
                h = block(h, density)
            density = block.output_density(h)
            if outputs is not None:
                outputs[block.name] = h
            i += 1
        return h

    def paths(self):
        """{block name: the path its last batch took}."""
        return {block.name: block.path for block in self.blocks}


def _rate(path, batch):
    """LINEAR_RATES' rate of ``path`` at this batch size (None below its first size)."""
    rates = [rate for size, rate in LINEAR_RATES[path] if size <= batch]
    return rates[-1] if rates else None


def _weights(module):
    """The conv or linear layer inside a wrapper (SparseWeights keeps its zeros in the weight
    itself; DropConnect uses every weight in eval mode)."""
    return module.module if isinstance(module, (SparseWeights, DropConnect)) else module


def _folded(weight, bias, norm):
    """(weight, bias) of the layer followed by an eval-mode BatchNorm: one affine map."""
    if norm.running_mean is None:
        raise ValueError("sparse_inference: a BatchNorm without running statistics "
                         "normalises by the batch even in eval mode")
    stats = {k: v.detach().float().cpu() for k, v in norm.state_dict().items() if v.dim()}
    scale = torch.rsqrt(stats["running_var"] + norm.eps)
    shift = -stats["running_mean"] * scale
    if norm.affine:
        scale, shift = scale * stats["weight"], shift * stats["weight"] + stats["bias"]
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), bias * scale + shift


def _unknown(name, module):
    return TypeError(f"sparse_inference: layer {name!r} is a {type(module).__name__}, which the "
                     f"engine does not run (it runs the layers of models.build_network: conv, "
                     f"linear, BatchNorm, 2x2 max pooling, dropout, ReLU, k-winners, "
                     f"log-softmax)")


def _blocks(net):
    """The network's layers grouped into blocks, each ended by its activation."""
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"sparse_inference: expected the nn.Sequential of models."
                        f"build_network, got a {type(net).__name__}")
    blocks, current = [], None
    for name, module in net.named_children():
        inner = _weights(module)
        if isinstance(inner, nn.Conv2d):
            current = _ConvBlock(name, inner, first=not blocks and current is None)
        elif isinstance(inner, nn.Linear):
            current = _LinearBlock(name, inner)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and current is not None:
            current.fold(module)
        elif isinstance(module, MaxPool2x2) and isinstance(current, _ConvBlock):
            current.pooled = True
        elif isinstance(module, (nn.ReLU, KWinners, KWinners2d, nn.LogSoftmax)):
            if current is None:
                raise ValueError(f"sparse_inference: {name!r} follows no conv or linear layer")
            current.finish(name, module)
            blocks.append(current)
            current = None
        elif not isinstance(module, (nn.Dropout, nn.Flatten)):
            raise _unknown(name, module)
    if current is not None:  # a last linear layer without an activation
        current.finish(current.name, None)
        blocks.append(current)
    return blocks


class _Block:
    """A weighted layer and its activation: ``weight`` and ``bias`` (BatchNorm folded in)."""

    def __init__(self, name, layer):
        self.name, self.path, self.k = name, None, None
        self.weight = layer.weight.detach().float().cpu().clone()
        bias = layer.bias if layer.bias is not None else layer.weight.new_zeros(len(self.weight))
        self.bias = bias.detach().float().cpu().clone()
        self.activation = self.boost = None

    def fold(self, norm):
        self.weight, self.bias = _folded(self.weight, self.bias, norm)

    def finish(self, name, activation):
        self.name, self.activation = name, activation
        if isinstance(activation, (KWinners, KWinners2d)):
            self.boost = activation.boost_factors().detach().cpu().contiguous().numpy()
            self.k = activation.k_eval
            self.hint = np.full(1, -1, np.int64)  # the threshold search's first probe
        if isinstance(activation, nn.LogSoftmax) and activation.dim not in (1, -1):
            raise ValueError(f"sparse_inference: {name!r} must be a log-softmax over dim 1")

    def pairs_with(self, after, x):
        return False

    def output_density(self, h):
        """At most this share of ``h`` (this block's output) is non-zero: k/n after
        k-winners, else None (unknown without counting)."""
        return None if self.k is None else self.k / (h.numel() // h.shape[0])

    def activate(self, h):
        """The activation of ``h`` (B, ...) contiguous, in place for ReLU."""
        act = self.activation
        if isinstance(act, (KWinners, KWinners2d)):
            flat = h.view(h.shape[0], -1)
            group = flat.shape[1] // len(self.boost)
            return kernels.kwinners.k_winners_eval(flat, self.boost, group, self.k,
                                                   self.hint).view_as(h)
        if isinstance(act, nn.ReLU):
            return h.relu_()
        if isinstance(act, nn.LogSoftmax):
            return torch.log_softmax(h, dim=1)
        return h


class _ConvBlock(_Block):
    """conv, [BatchNorm], 2x2 max pooling, activation."""

    def __init__(self, name, conv, first):
        if (conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode) != (
                (1, 1), (0, 0), (1, 1), 1, "zeros"):
            raise ValueError(f"sparse_inference: {name!r} must be a stride-1, unpadded, "
                             f"ungrouped convolution, as build_network makes them")
        super().__init__(name, conv)
        self.first, self.pooled, self.layout = first, False, None
        self.fuse = True  # k-winners inside the conv kernel (False: apart, for profiling)

    def finish(self, name, activation):
        if not self.pooled:
            raise ValueError(f"sparse_inference: the convolution before {name!r} must be "
                             f"followed by 2x2 max pooling, as build_network makes them")
        super().finish(name, activation)
        self.layout = kernels.sparse_conv.ConvLayout(self.weight, self.bias)

    def pairs_with(self, after, x):
        """Whether this block and ``after`` run as one kernel on ``x`` (sparse_conv.conv_pair):
        a first layer of one channel and a conv layer behind it, both with k-winners, the
        second's input sparse enough for its sparse path."""
        if not (self.first and isinstance(after, _ConvBlock) and self.fuse and after.fuse
                and isinstance(self.activation, KWinners2d)
                and isinstance(after.activation, KWinners2d) and x.shape[1] == 1):
            return False
        self._check(x)
        kh, kw = self.layout.kernel
        h, w = (x.shape[2] - kh + 1) // 2, (x.shape[3] - kw + 1) // 2
        after_size = max(after.layout.kernel) + 1
        return (min(h, w) >= after_size
                and self.k / (self.layout.out_channels * h * w) <= SPARSE_INPUT_MAX)

    def pair(self, after, x):
        """This block and ``after`` on ``x``, one sample at a time (``pairs_with``)."""
        self.path = after.path = "sparse"
        return kernels.sparse_conv.conv_pair(
            x, (self.layout, (self.boost, self.k, self.hint)),
            (after.layout, (after.boost, after.k, after.hint)))

    def _check(self, x):
        size = max(self.layout.kernel) + 1  # the smallest input with a pooled output
        if x.dim() != 4 or x.shape[1] != self.weight.shape[1] or min(x.shape[2:]) < size:
            raise ValueError(f"{self.name}: expected (B, {self.weight.shape[1]}, H, W) with "
                             f"H, W >= {size}, got {tuple(x.shape)}")

    def __call__(self, x, density):  # (B, C, H, W) -> (B, O, Ho // 2, Wo // 2)
        self._check(x)
        if self.first:  # the network's input: the background is each sample's minimum
            offsets = None  # found by the conv kernel
            sparse = x.shape[1] == 1  # at any density (models/kernels/sparse_conv.py)
        else:  # behind ReLU or k-winners: the background is 0
            offsets = np.zeros(x.shape[0], np.float32)
            if density is None:
                density = kernels.sparse_conv.nonzero_fraction(x)
            sparse = x.shape[1] > 1 and density <= SPARSE_INPUT_MAX
        self.path = "sparse" if sparse else "library"
        if sparse and self.fuse and isinstance(self.activation, KWinners2d):
            winners = (self.boost, self.k, self.hint)  # taken per sample as it is pooled
            return kernels.sparse_conv.conv_pool(x, offsets, self.layout, winners)
        if sparse:
            return self.activate(kernels.sparse_conv.conv_pool(x, offsets, self.layout))
        return self.activate(kernels.pool.max_pool2x2(F.conv2d(x, self.weight, self.bias)))


class _LinearBlock(_Block):
    """linear, [BatchNorm], [dropout], activation (or the log-softmax of the output layer)."""

    def finish(self, name, activation):
        super().finish(name, activation)
        self.layout = kernels.sparse_linear.LinearLayout(self.weight, self.bias)
        self.chosen = {}  # (batch, non-zero inputs) -> path, for inputs behind k-winners

    def __call__(self, x, density):  # (B, ...) -> (B, N)
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.layout.n_in:
            raise ValueError(f"{self.name}: expected {self.layout.n_in} inputs per sample, "
                             f"got {tuple(x.shape)}")
        fixed = density is not None  # behind k-winners: the same count for every batch size
        if not fixed:
            density = kernels.sparse_conv.nonzero_fraction(x)
        key = (x.shape[0], round(density * x.numel()))
        self.path = self.chosen.get(key) or self._fastest(*key)
        if fixed:  # kept: choosing anew took a one-image batch of Sparse CNN-2 8% of its time
            self.chosen[key] = self.path
        if self.path == "gather":
            return self.activate(kernels.sparse_linear.gather(x, self.layout))
        if self.path == "sparse_weights":
            return self.activate(kernels.sparse_linear.sparse_weights(x, self.layout))
        return self.activate(F.linear(x, self.weight, self.bias))

    def _fastest(self, batch, nonzero):
        """The path that should take least time, by its products at its measured rate."""
        products = kernels.sparse_linear.costs(self.layout, batch, nonzero)
        layout = self.layout
        if layout.nonzero_weights > SPARSE_WEIGHTS_MAX * layout.n_in * layout.n_out:
            del products["sparse_weights"]
        times = {path: products[path] / rate for path in products
                 if (rate := _rate(path, batch)) is not None}
        return min(times, key=times.get)
