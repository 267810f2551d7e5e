"""Speech Commands end to end through run.py on a tiny generated folder (no espeak needed)."""

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import load_experiment
from experiments.core.records import read_jsonl
from run import cli
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parent.parent


def run_smoke(config, tmp_path, capsys, process):
    """run.py --smoke on a generated folder: as a process, or its entry point in this one."""
    folder = make_dataset(tmp_path / "gsc", train_per_digit=4)
    args = [config, "--smoke", "--out", str(tmp_path), "--set", f"data.root={folder}",
            "--set", "data.download=false"]
    if process:
        result = subprocess.run([sys.executable, "run.py", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout
    code = cli(args)
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    return out


@pytest.mark.parametrize("config", [
    "configs/gsc_sparse.yaml",
    pytest.param("configs/gsc_table2.yaml", marks=pytest.mark.slow),  # 4 networks, a process
])
def test_smoke_trains_sweeps_noise_and_reports(config, tmp_path, capsys):
    stdout = run_smoke(config, tmp_path, capsys, process=config.endswith("table2.yaml"))
    # 10 digits x 7 clips + 4 extra zeros, minus the 4 digit clips in the two list files
    assert "Speech Commands v0.01, digits: 70 training clips (+7 silence)" in stdout
    exp = load_experiment(REPO / config, smoke=True)
    for name in exp.run:
        (record,) = read_jsonl(tmp_path / "smoke" / exp.experiment / name / "seed-42" /
                               "metrics.jsonl")
        assert record["num_test"] == 2  # the two digit clips of testing_list.txt
        assert len(record["noise_correct"]) == 11
        assert record["noise_score"] == sum(record["noise_correct"].values())
        assert record["batch_size"] == exp.jobs[name].train.batch_size
    table = (tmp_path / "smoke" / exp.experiment / "table.md").read_text()
    assert "Google Speech Commands" in table


def test_synthetic_runs_are_labelled_as_the_stand_in(tmp_path):
    exp = load_experiment(REPO / "configs/gsc_synthetic.yaml")
    assert all(job.data.source == "synthetic" for job in exp.jobs.values())
    assert exp.experiment == "gsc_synthetic" and set(exp.run) == {
        "dense_cnn2", "dense_cnn2_dr05", "sparse_cnn2", "super_sparse_cnn2"}
