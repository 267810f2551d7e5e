"""SGD with momentum in one pass over each parameter: torch's arithmetic, bit for bit.

For a parameter p with gradient g and momentum buffer v (momentum m, learning rate lr, no
dampening, weight decay, Nesterov or maximize), one step of ``torch.optim.SGD`` is

    v <- m v + g        (rounded twice: after the product and after the sum)
    p <- p - lr v       (one fused multiply-add, rounded once)

in float32, with m and -lr rounded to float32. torch's multi-tensor (``foreach``) path runs this
as three passes over every tensor (v *= m; v += g; p += -lr v), so it reads and writes the
momentum buffer twice and each array moves through the cache eight times; for Dense CNN-1 (4.3
million weights in its hidden layer) that made the optimizer about 12% of a training step here.
The numba kernel below does one pass (reads p, g, v; writes p, v) with the same roundings:
numba leaves products and sums uncontracted, and the parameter update calls LLVM's ``fma``.

The subclass keeps ``torch.optim.SGD``'s state (``momentum_buffer`` per parameter) and its
checkpoints. Anything the kernel does not cover (the first step, which creates the buffers;
momentum 0, where torch's one pass is already minimal; dampening, weight decay, Nesterov,
maximize; other devices or dtypes; ``MODELS_BACKEND=torch``) runs torch's own step.
"""

import numpy as np
import torch

from models.backend import HAVE_NUMBA, chunk_count, run_rows, uses_cpu_kernel

if HAVE_NUMBA:
    import numba
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _fma(typingctx, a, b, c):
        """a * b + c with one rounding (LLVM's llvm.fma: a hardware FMA where the CPU has one)."""
        signature = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, sig, args):
            f32 = ir.FloatType()
            fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
            return builder.call(fma, args)
        return signature, codegen

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def _momentum_step(p, g, v, momentum, neg_lr, first, last):
        """v <- momentum v + g, p <- fma(v, -lr, p) over the flat elements [first, last)."""
        p, g, v = p[first:last], g[first:last], v[first:last]
        for i in range(last - first):  # indices from 0 on slices: LLVM vectorises this loop
            velocity = v[i] * momentum + g[i]
            v[i] = velocity
            p[i] = _fma(velocity, neg_lr, p[i])


class SGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose momentum steps on CPU float32 tensors run the one-pass kernel
    (same results bit for bit, same state and checkpoints)."""

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not all(self._fusable(group) for group in self.param_groups):
            return super().step(closure)
        for group in self.param_groups:
            momentum, neg_lr = np.float32(group["momentum"]), np.float32(-group["lr"])
            for p in group["params"]:
                if p.grad is not None:
                    v = self.state[p]["momentum_buffer"]
                    flat = [t.view(-1).numpy() for t in (p, p.grad, v)]
                    run_rows(_momentum_step, (*flat, momentum, neg_lr), p.numel(),
                             chunk_count(p.view(-1)))
        return None

    def _fusable(self, group):
        """Whether the kernel serves this group's step: plain momentum, and every parameter
        with a gradient a contiguous CPU float32 tensor with a momentum buffer."""
        if (group["momentum"] == 0 or group["dampening"] != 0 or group["weight_decay"] != 0
                or group["nesterov"] or group["maximize"] or group["differentiable"]
                or group.get("fused") or torch.is_tensor(group["lr"])):
            return False
        for p in group["params"]:
            if p.grad is None:
                continue
            v = self.state.get(p, {}).get("momentum_buffer")
            if (v is None or p.grad.is_sparse or not uses_cpu_kernel(p, p.grad, v)
                    or not (p.is_contiguous() and p.grad.is_contiguous() and v.is_contiguous())):
                return False
        return True
