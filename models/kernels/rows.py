"""How one kernel call splits its rows (samples, planes, output channels) over threads.

A kernel here is a numba function ``kernel(*args, first, last)`` that writes rows [first, last)
of its outputs and nothing else, so slices of the rows can run in parallel with the same
result bit for bit. Small calls run on one thread: a parallel launch costs more than it saves.
"""

import torch

PARALLEL_MIN = 1 << 15  # values per kernel call below which a kernel runs on one thread


def chunk_count(like, limit=None):
    """Parallel chunks for one kernel call whose work is set by ``like``'s size: torch's thread
    count (at most ``like``'s rows and ``limit``) for large inputs, else 1."""
    if like.numel() < PARALLEL_MIN:
        return 1
    return max(1, min(like.shape[0], torch.get_num_threads(), limit or like.shape[0]))


def run_rows(kernel, chunked, args, rows, chunks):
    """``kernel(*args, first, last)`` over rows [0, rows): called once from Python when
    ``chunks`` is 1, else ``chunked(args, rows, chunks)``, the kernel's own parallel loop
    over ``chunks`` slices of the rows: a module-level function

        @numba.njit(parallel=True, nogil=True, cache=True)
        def kernel_chunks(args, rows, chunks):
            for c in numba.prange(chunks):
                kernel(*args, c * rows // chunks, (c + 1) * rows // chunks)

    next to each kernel. (One parallel loop taking the kernel as an argument, a first-class
    function, was compiled anew in every process, 5-10 s per kernel at two threads, its
    cache index growing by an entry each time: numba's cache cannot key a function by its
    identity.)"""
    if chunks == 1:
        kernel(*args, 0, rows)
    else:
        chunked(args, rows, chunks)
