"""``Conv2d``: ``nn.Conv2d`` whose CPU passes skip zeros: mostly-zero inputs in the forward
pass, zero output gradients in the backward pass.

The parameters and state_dict keys are ``nn.Conv2d``'s, and so is every pass on other devices
and dtypes, under ``MODELS_BACKEND=torch``, and for any convolution but a stride-1, unpadded,
ungrouped one. On float32 CPU tensors of that kind (the networks' 5x5 convolutions) the numba
kernels of models/kernels/conv.py serve it:

- Forward: when the input has several channels and at most a quarter of its values
  (``SPARSE_INPUT_MAX``) are non-zero, a loop over the non-zero inputs. The second
  convolution of every k-winners network sees such inputs (Sparse CNN-2: 400 winners of
  4,608 pooled values, about 9% non-zero in training and 13% in evaluation). Inputs behind
  ReLU (about half non-zero) and one-channel images go to ``F.conv2d``.
- Backward: when at most half of the output gradient (``SPARSE_MAX``) is non-zero, loops that
  visit the non-zero gradients only. Every convolution here feeds 2x2 max pooling and then
  ReLU or k-winners, so at most a quarter of its outputs get a gradient, and after k-winners
  a few percent (Sparse CNN-2: 400 of 18,432 first-layer outputs per sample).
- The weight gradient of a one-channel input (every network's first layer): the loop behind
  k-winners (at most 5% of the first sample's gradient non-zero, ``ONE_CHANNEL_LOOP_MAX``),
  else one matrix product over the input's patches (behind ReLU, 12%).

All are the same sums as oneDNN's, added in another order: they agree with ``nn.Conv2d`` to
float32 rounding (about 1e-6 relative, tested), not bit for bit, so training and evaluation
here follow another rounding path than ``nn.Conv2d``'s (a k-winners tie or an argmax this
close is rare: see tests/test_pretrained.py). ``MODELS_BACKEND=torch`` gives ``nn.Conv2d``
exactly.
"""

from torch import nn

from models import backend, kernels


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with the sparse-input CPU forward and sparse-gradient CPU backward
    described above."""

    def _conv_forward(self, input, weight, bias):  # (B, C, H, W) -> (B, O, Ho, Wo)
        if self._kernel_shape(input) and backend.uses_cpu_kernel(input, weight):
            return kernels.conv.conv2d(input, weight, bias)
        return super()._conv_forward(input, weight, bias)

    def _kernel_shape(self, input):
        """Whether this is a convolution the kernels compute: stride 1, no padding or
        dilation, one group, a batched 4-d input."""
        return (self.stride == (1, 1) and self.padding == (0, 0) and self.dilation == (1, 1)
                and self.groups == 1 and self.padding_mode == "zeros" and input.dim() == 4)
