"""models/kernels/rows.py: a kernel's parallel path is compiled once and then loaded from
numba's cache, in every later process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import backend

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not backend.HAVE_NUMBA, reason="numba not installed")

# Two threads, so that the pooling kernel takes its parallel path.
PROGRAM = """
import torch
torch.set_num_threads(2)
from models.kernels import pool
pool.max_pool2x2(torch.rand(64, 30, 24, 24))
"""


@pytest.mark.slow
def test_the_parallel_paths_are_loaded_from_the_cache_in_a_later_process(tmp_path):
    # A parallel loop taking its kernel as an argument had been compiled anew in every
    # process (5-10 s per kernel) and had added an entry to its cache index each time.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def cache_files():
        return sorted(p.name for p in tmp_path.rglob("*") if p.suffix in (".nbi", ".nbc"))

    subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, env=env, check=True)
    after = cache_files()
    subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, env=env, check=True)
    assert any("_chunks" in name for name in after)
    assert cache_files() == after  # the second process compiled nothing new
