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


def chunk_count(like, limit=None):
    """Parallel chunks for one kernel call whose work is set by ``like``'s size: torch's thread
    count (at most ``like``'s rows and ``limit``) for large inputs, else 1 (a parallel launch
    costs more than it saves on small ones)."""
    if like.numel() < PARALLEL_MIN:
        return 1
    return max(1, min(like.shape[0], torch.get_num_threads(), limit or like.shape[0]))


def run_rows(kernel, chunked, args, rows, chunks):
    """``kernel(*args, 0, rows)`` over all rows, or with ``chunks`` > 1 ``chunked(*args,
    chunks)``, the numba parallel loop that runs ``kernel`` on that many slices of the rows.
    The serial call comes from Python, so one compiled ``kernel`` serves both paths."""
    if chunks == 1:
        kernel(*args, 0, rows)
    else:
        chunked(*args, chunks)
