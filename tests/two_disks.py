"""A Ray cluster of two nodes with separate disks on this machine, and what
tests/test_ray_cluster.py does with it. Run as PID 1 of its own namespaces, where only loopback
exists and every process ends when this script does (so nothing is left running and ``ray
stop`` is never needed):

    unshare -n -p -f --mount-proc python -m tests.two_disks SPEC.json

The head node runs beside the driver and sees the real folders. The worker node runs in its own
mount and UTS namespaces: hostname ``ray-worker``, and tmpfs over /tmp (the head's Ray files,
the tests' output folders) and over the project's code folders, so it has neither the code nor
the driver's run folders (it sees the datasets folder, read-only data at the same path, and the
Python environment). SPEC names the output folder, the Ray port, the head's temp dir and each
scenario's --set overrides; ``<out>/report.json`` gets each scenario's exit codes (its output
goes to ``<out>/<scenario>.log``):

    suite     the suite, once
    restart   the driver killed (SIGKILL) once a job is done, then run again
    resume    the worker node killed once a job it runs has sent back a checkpoint
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODE = ("experiments", "models", "data", "configs", "tests", "benchmarks")
WORKER = "ray-worker"
NODE = ["--num-cpus", "1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1"]
ENV = {**{k: v for k, v in os.environ.items()
          if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_TMPDIR", "RAY_ADDRESS")},
       "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
# (a second node needs Ray's default binding: here, inside the namespace, only loopback exists)
RAY = str(Path(sys.executable).with_name("ray"))


def start_nodes(port, head_dir, log, out):
    """The head here, the worker in its own mount and UTS namespaces (see the module doc). A
    checkout under /tmp (its environment too) keeps /tmp: then only the head's Ray files and
    the output folder are hidden from the worker."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    run([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false",
         "--temp-dir", head_dir, *NODE], log.with_suffix(".head.log"), check=True)
    hidden = " && ".join(f"mount -t tmpfs none {REPO / name}" for name in CODE)
    under_tmp = Path("/tmp") in (*REPO.parents, *Path(sys.executable).parents)
    tmp = [head_dir, out] if under_tmp else ["/tmp"]
    hide_tmp = " && ".join(f"mount -t tmpfs none {path}" for path in tmp)
    worker = (f"hostname {WORKER} && {hide_tmp} && {hidden} && exec {RAY} start "
              f"--address 127.0.0.1:{port} --temp-dir /tmp/ray-worker {' '.join(NODE)}")
    run(["unshare", "-m", "-u", "sh", "-c", worker], log.with_suffix(".worker.log"), check=True)
    wait_for_nodes(port, 2)


def wait_for_nodes(port, count, timeout=120):
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = subprocess.run([sys.executable, "-c", probe, f"127.0.0.1:{port}"], env=ENV,
                               capture_output=True, text=True).stdout.strip()
        if alive == str(count):
            return
        time.sleep(1)
    raise RuntimeError(f"the cluster did not reach {count} nodes in {timeout} s")


def driver(port, out, overrides):
    """run.py with the Ray launcher on this cluster, as a user would type it."""
    sets = [arg for override in overrides for arg in ("--set", override)]
    return [sys.executable, "run.py", "configs/mnist_table1.yaml", "--smoke", "--out", str(out),
            "--launcher", "ray", "--address", f"127.0.0.1:{port}", *sets]


def run(command, log, check=False):
    """Run ``command`` to its end, its output in ``log``; its exit code."""
    with open(log, "w") as f:
        return subprocess.run(command, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT,
                              timeout=900, check=check).returncode


def start(command, log):
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def wait_until(condition, process, timeout=600):
    """Poll ``condition()`` while ``process`` runs; its first true value, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return None


def restart(port, out, overrides):
    """Kill the driver once a job is done, then run it again."""
    first = start(driver(port, out, overrides), out.with_suffix(".first.log"))
    done = wait_until(lambda: next(out.rglob("done"), None), first)
    first.kill()
    first.wait()
    return {"killed_after": str(done.parent) if done else None, "killed_code": first.returncode,
            "code": run(driver(port, out, overrides), out.with_suffix(".log"))}


def on_worker(out):
    """A run folder (on the driver) whose job runs on the worker and has sent back a
    checkpoint; None until there is one."""
    for path in out.rglob("provenance.json"):
        sessions = json.loads(path.read_text())["sessions"]
        if sessions[-1]["hostname"] == WORKER and (path.parent / "checkpoint.pt").is_file():
            return path.parent
    return None


def kill_worker_node():
    """SIGKILL every process of the worker's UTS namespace (its raylet, its jobs)."""
    mine = os.readlink("/proc/self/ns/uts")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            theirs = os.readlink(proc / "ns" / "uts")
        except OSError:
            continue
        if theirs != mine:
            os.kill(int(proc.name), signal.SIGKILL)


def resume(port, out, overrides):
    """Kill the worker node once a job it runs has sent back a checkpoint."""
    process = start(driver(port, out, overrides), out.with_suffix(".log"))
    folder = wait_until(lambda: on_worker(out), process)
    if folder:
        kill_worker_node()
    return {"killed_during": str(folder) if folder else None, "code": process.wait(timeout=900)}


def main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    out, port = Path(spec["out"]), spec["port"]
    ENV["TMPDIR"] = spec["head"]  # the head's node-local scratch goes with its Ray files
    start_nodes(port, spec["head"], out / "nodes.log", out)
    report = {}
    started = time.perf_counter()
    report["suite"] = {"code": run(driver(port, out / "suite", spec["suite"]),
                                   out / "suite.log")}
    report["suite"]["seconds"] = round(time.perf_counter() - started, 1)
    report["restart"] = restart(port, out / "restart", spec["restart"])
    report["resume"] = resume(port, out / "resume", spec["resume"])
    (out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
