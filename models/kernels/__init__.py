"""The numba CPU kernels behind the layers, each with the torch.autograd.Function that calls it.

On this machine's torch build some CPU ops waste most of their time: ``torch.topk`` guesses
branches on every comparison, ``F.max_pool2d`` is 7-12x slower on contiguous (NCHW) tensors,
and oneDNN's convolution multiplies the zeros that k-winners and pooling leave. One module per
layer, each with the one entry its layer calls when ``models.backend.uses_cpu_kernel`` says
the kernels serve its tensors (float32 on the CPU, backend "auto"):

    kwinners.k_winners(x, layer, boost, group, k)   KWinners, KWinners2d: top k by counting
    conv.conv2d(x, weight, bias)                    Conv2d: skips zero inputs and gradients
    pool.max_pool2x2(x)                             MaxPool2x2

and ``rows``, how a kernel call splits its rows over threads. The inference engine
(models/inference.py) adds ``sparse_conv`` (a convolution and its pooling from the
non-background inputs), ``sparse_linear`` (a linear layer from the non-zero inputs or the
stored non-zero weights) and ``simd``, the 16-lane vectors they accumulate in. Each gives what its layer's torch
ops give: the same values bit for bit (k-winners, pooling) or to float32 rounding (the
convolution: the same sums in another order); tests hold them to it.
"""

from models.backend import HAVE_NUMBA

if HAVE_NUMBA:  # numba comes with librosa; without it every layer uses its torch ops
    from models.kernels import conv, kwinners, pool, sparse_conv, sparse_linear  # noqa: F401
