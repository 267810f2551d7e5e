"""How one kernel call splits its rows (samples, planes, output channels) over threads.

A kernel here is a numba function ``kernel(*args, first, last)`` that writes rows [first, last)
of its outputs and nothing else, so slices of the rows can run in parallel with the same
result bit for bit. Small calls run on one thread: a parallel launch costs more than it saves.
"""

import numba
import torch

PARALLEL_MIN = 1 << 15  # values per kernel call below which a kernel runs on one thread


def chunk_count(like, limit=None):
    """Parallel chunks for one kernel call whose work is set by ``like``'s size: torch's thread
    count (at most ``like``'s rows and ``limit``) for large inputs, else 1."""
    if like.numel() < PARALLEL_MIN:
        return 1
    return max(1, min(like.shape[0], torch.get_num_threads(), limit or like.shape[0]))


def run_rows(kernel, args, rows, chunks):
    """``kernel(*args, first, last)`` over rows [0, rows): called once from Python when
    ``chunks`` is 1 (so one compiled ``kernel`` serves both paths), else on ``chunks`` slices
    of the rows in parallel by ``_row_chunks``."""
    if chunks == 1:
        kernel(*args, 0, rows)
    else:
        _row_chunks(kernel, args, rows, chunks)


@numba.njit(parallel=True, nogil=True, cache=True)
def _row_chunks(kernel, args, rows, chunks):
    """One numba thread per slice of the rows; compiled once per kernel and argument types
    (numba passes the kernel as a first-class function)."""
    for c in numba.prange(chunks):
        kernel(*args, c * rows // chunks, (c + 1) * rows // chunks)
