"""Which implementation serves a layer: the numba CPU kernels (models/kernels/) or torch ops.

"auto" (the default): the kernels for float32 tensors on the CPU, torch ops elsewhere (GPU,
other dtypes). "torch": torch ops always, for tracing, export or comparison. Set
``MODELS_BACKEND=torch`` in the environment, or ``models.backend.BACKEND = "torch"`` in code
(read at every call).
"""

import importlib.util
import os

import torch

HAVE_NUMBA = importlib.util.find_spec("numba") is not None  # comes with librosa

BACKEND = os.environ.get("MODELS_BACKEND", "auto")


def uses_cpu_kernel(*tensors):
    """Whether the numba kernels serve these tensors: all float32 on the CPU, backend "auto",
    and no tracing or compiling (which must see torch ops)."""
    return (HAVE_NUMBA and BACKEND == "auto" and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors))
