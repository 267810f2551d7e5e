"""Which implementation serves a layer: the numba CPU kernels or plain torch ops.

"auto" (the default): the numba kernels (models/kwinners_cpu.py, pool_cpu.py, conv_cpu.py) for
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


def run_rows(kernel, args, rows, chunks):
    """``kernel(*args, first, last)``, a numba row kernel, over rows [0, rows): called once
    from Python when ``chunks`` is 1 (so one compiled ``kernel`` serves both paths), else on
    ``chunks`` slices of the rows in parallel by ``_row_chunks``. Kernels write disjoint rows."""
    if chunks == 1:
        kernel(*args, 0, rows)
    else:
        _row_chunks(kernel, args, rows, chunks)


if HAVE_NUMBA:
    import numba

    @numba.njit(parallel=True, nogil=True, cache=True)
    def _row_chunks(kernel, args, rows, chunks):
        """One numba thread per slice of the rows; compiled once per kernel and argument types
        (numba passes the kernel as a first-class function)."""
        for c in numba.prange(chunks):
            kernel(*args, c * rows // chunks, (c + 1) * rows // chunks)
