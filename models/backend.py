"""Which implementation serves a layer: the numba CPU kernels or plain torch ops.

"auto" (the default): the numba kernels (models/kwinners_cpu.py, models/pool_cpu.py) for
float32 tensors on the CPU, torch ops elsewhere (GPU, other dtypes). "torch": torch ops always,
for tracing, export or comparison. Set ``MODELS_BACKEND=torch`` in the environment, or
``models.backend.BACKEND = "torch"`` in code (read at every call).
"""

import importlib.util
import os

import torch

HAVE_NUMBA = importlib.util.find_spec("numba") is not None  # comes with librosa

BACKEND = os.environ.get("MODELS_BACKEND", "auto")
PARALLEL_MIN = 1 << 15  # values per kernel call below which a kernel runs on one thread


def uses_cpu_kernel(*tensors):
    """Whether the numba kernels serve these tensors: all float32 on the CPU, backend "auto",
    and no tracing or compiling (which must see torch ops)."""
    return (HAVE_NUMBA and BACKEND == "auto" and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors))


def run_kernel(serial, parallel, args, like, max_chunks=None):
    """``serial(*args)``, or ``parallel(*args, chunks)`` when ``like`` (the tensor whose size
    sets the work) is large enough for ``parallel_chunks`` to split, at most ``max_chunks``."""
    chunks = parallel_chunks(like)
    if max_chunks is not None:
        chunks = min(chunks, max_chunks)
    if chunks == 1:
        serial(*args)
    else:
        parallel(*args, chunks)


def parallel_chunks(x):
    """Parallel tasks for one kernel call over ``x``'s rows: torch's thread count for large
    inputs, else 1 (a parallel launch costs more than it saves on small ones)."""
    if x.numel() < PARALLEL_MIN:
        return 1
    return max(1, min(x.shape[0], torch.get_num_threads()))
