"""The Ray launcher against the local pool, on the smoke Table 1 suite (8 jobs of a few seconds).

    python benchmarks/bench_launchers.py [--networks 8]

Prints, each from one run of the suite into a fresh temporary folder:
1. the suite's wall time with the local pool (2 processes of 1 thread) and with Ray on a
   one-node loopback cluster of 2 CPUs (1 per job), and their difference per job: the Ray
   launcher's overhead (connecting, starting and importing worker processes, submitting and
   collecting tasks). Starting the cluster itself is timed apart: a cluster outlives suites.
2. the suite's wall time on one 1-CPU node against two 1-CPU nodes (a loopback two-node
   cluster): what a second node buys.
Ray's servers bind 127.0.0.1 only and are ended by pid afterwards (tests/ray_helpers.py).
"""

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.ray_helpers import loopback_cluster  # noqa: E402  (sets Ray's loopback env)
from experiments.cli import load_experiment, run_experiment  # noqa: E402

CONFIG = REPO / "configs" / "mnist_table1.yaml"


@contextmanager
def quiet():
    """Send this process's and its children's output to /dev/null (file descriptors 1, 2)."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1), os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def timed_suite(suite, **launcher):
    """Seconds to run every job of ``suite`` into a fresh folder with ``launcher``'s options."""
    with tempfile.TemporaryDirectory() as out, quiet():
        start = time.perf_counter()
        run_experiment(suite, out, **launcher)
        return time.perf_counter() - start


def on_cluster(suite, nodes, cpus):
    """(seconds to start a loopback cluster of ``nodes`` x ``cpus``, seconds of the suite on it)."""
    start = time.perf_counter()
    with quiet(), loopback_cluster(nodes, cpus) as cluster:
        started = time.perf_counter() - start
        return started, timed_suite(suite, launcher="ray", address=cluster.address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=8, help="jobs: the first N networks")
    args = parser.parse_args()
    os.chdir(REPO)  # the config's data.root (datasets/) is relative to the repository
    suite = load_experiment(CONFIG, smoke=True)
    suite.run = suite.run[:args.networks]
    jobs = len(suite.run)
    print(f"smoke Table 1 suite: {jobs} jobs; {os.cpu_count()} cores here", flush=True)
    local = timed_suite(suite, workers=2, threads=1)
    start, ray_two_cpus = on_cluster(suite, nodes=1, cpus=2)
    print(f"local pool, 2 x 1 thread:      {local:6.1f} s")
    print(f"ray, one node of 2 CPUs:       {ray_two_cpus:6.1f} s  (cluster start {start:.1f} s)")
    print(f"ray launcher overhead per job: {(ray_two_cpus - local) / jobs:+6.2f} s")
    one, one_node = on_cluster(suite, nodes=1, cpus=1)
    two, two_nodes = on_cluster(suite, nodes=2, cpus=1)
    print(f"ray, one node of 1 CPU:        {one_node:6.1f} s  (cluster start {one:.1f} s)")
    print(f"ray, two nodes of 1 CPU each:  {two_nodes:6.1f} s  (cluster start {two:.1f} s)")
    print(f"speed-up of two nodes on one:  {one_node / two_nodes:6.2f}x")

if __name__ == "__main__":
    main()
