"""A fresh clone: its main job starts a new run, its shipped reports rebuild byte for byte, and
no command rewrites a shipped file (git status stays clean)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--set", "train.epochs=1", "--set", "data.train_limit=128", "--set",
         "data.test_limit=100"]
# Commands run in the clone, one process (run.py's entry point, the clone's own code).
DRIVER = """
import sys
from run import cli
for argv in {commands!r}:
    print("$ run.py", " ".join(argv), flush=True)
    code = cli(argv)
    print("exit", code, flush=True)
    if code:
        sys.exit(code)
"""


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def clone_working_tree(target):
    """``git clone`` of this repository plus the working tree's uncommitted changes."""
    git("clone", "--quiet", str(REPO), str(target), cwd=REPO)
    changed = (git("diff", "--name-only", "--no-renames", "HEAD", cwd=REPO)
               + git("ls-files", "--others", "--exclude-standard", cwd=REPO))
    for name in changed.splitlines():
        source, dest = REPO / name, target / name
        if source.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        else:
            dest.unlink(missing_ok=True)
    git("add", "--all", cwd=target)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty",
        "-m", "working tree", cwd=target)
    return target


@pytest.fixture(scope="module")
def clone(tmp_path_factory, mnist_root):
    target = clone_working_tree(tmp_path_factory.mktemp("clone") / "repo")
    (target / "datasets").symlink_to(mnist_root)
    return target


def run_in(clone, commands):
    code = DRIVER.format(commands=commands)
    env = {"MODELS_BACKEND": "torch", "PATH": "/usr/bin:/bin"}  # no kernel compile here
    return subprocess.run([sys.executable, "-c", code], cwd=clone, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.mark.slow
def test_a_fresh_clone_trains_its_main_job_and_rebuilds_shipped_reports(clone):
    shipped = sorted(p.name for p in (clone / "results" / "reference").iterdir())
    assert {"mnist_sparse", "mnist_table1", "gsc_synthetic", "theory", "mnist_analysis",
            "mnist_adversarial", "mnist_corruptions", "mnist_weights_study"} <= set(shipped)
    commands = [["configs/mnist_sparse.yaml", *SMALL],
                ["configs/gsc_synthetic.yaml", "--describe"],
                ["configs/mnist_table1.yaml", "--report", "--out", "results/reference"],
                ["configs/mnist_sparse.yaml", "--report", "--out", "results/reference"],
                ["configs/gsc_synthetic.yaml", "--report", "--out", "results/reference"],
                ["configs/mnist_analysis.yaml", "--report", "--out", "results/reference"],
                ["configs/mnist_adversarial.yaml", "--report", "--out", "results/reference"],
                ["configs/mnist_corruptions.yaml", "--report", "--out", "results/reference"],
                ["configs/mnist_weights_study.yaml", "--report", "--out", "results/reference"]]
    result = run_in(clone, commands)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "mnist_sparse: 1 jobs, 0 already done, 1 to run" in result.stdout
    run_dir = clone / "results" / "mnist_sparse" / "sparse_cnn2" / "seed-42"
    assert (run_dir / "done").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert (clone / "results" / "mnist_sparse" / "comparison.md").is_file()
    assert (clone / "results" / "gsc_synthetic" / "networks.md").is_file()
    # The user's runs are ignored, every shipped file is byte for byte what git holds.
    assert git("status", "--porcelain", "--untracked-files=all", cwd=clone) == ""


@pytest.mark.slow  # in the clone of the slow test above (its fixture); refuse_reference is tested fast in test_config
def test_runs_never_write_into_the_reference_records(clone):
    result = run_in(clone, [["configs/mnist_sparse.yaml", *SMALL, "--out", "results/reference"]])
    assert result.returncode == 2
    assert "shipped reference records" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert git("status", "--porcelain", "--untracked-files=all", cwd=clone) == ""
