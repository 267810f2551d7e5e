"""The one run lifecycle (experiments/core/lifecycle.py): claim, lock, session, records, done."""

import json
import sys
from dataclasses import dataclass

import pytest

from experiments.core.lifecycle import hosted, open_run
from experiments.core.config import ConfigError
from experiments.core.records import cpu_kind, git_commit, launched_by, read_jsonl
from experiments.core.runs import RunLocked, is_done, run_lock


@dataclass
class Cfg:
    steps: int = 3


def job(folder, cfg=Cfg(), fail_at=None, leave_unfinished=False):
    """A job of ``cfg.steps`` steps that can fail at one of them; returns its records."""
    with open_run(folder, cfg, "net", 1, {"name": "toy"}) as run:
        if run.finished:
            return run.records
        first = len(run.records)
        run.start("cpu", first, cfg.steps)
        for step in range(first, cfg.steps):
            if step == fail_at:
                raise RuntimeError("boom")
            run.add({"step": step})
        if leave_unfinished:
            run.unfinished()
    return run.records


def sessions(folder):
    return json.loads((folder / "provenance.json").read_text())["sessions"]


def test_a_job_writes_config_dataset_records_session_and_done(tmp_path):
    assert job(tmp_path) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert is_done(tmp_path) and json.loads((tmp_path / "done").read_text())["steps"] == 3
    assert json.loads((tmp_path / "dataset.json").read_text()) == {"name": "toy"}
    (session,) = sessions(tmp_path)
    assert session["epochs"] == [0, 3] and session["wall_seconds"] is not None
    assert not (tmp_path / "lock").exists()


def test_a_failed_job_is_not_done_and_resumes_where_it_stopped(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        job(tmp_path, fail_at=2)
    assert not is_done(tmp_path) and not (tmp_path / "lock").exists()
    assert sessions(tmp_path)[-1]["finished"] is None
    assert job(tmp_path) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert [s["epochs"] for s in sessions(tmp_path)] == [[0, 3], [2, 3]]


def test_a_done_job_runs_nothing_again(tmp_path):
    job(tmp_path)
    stamp = (tmp_path / "done").read_text()
    assert job(tmp_path, fail_at=0) == [{"step": 0}, {"step": 1}, {"step": 2}]  # nothing ran
    assert (tmp_path / "done").read_text() == stamp and len(sessions(tmp_path)) == 1


def test_unfinished_closes_the_session_without_done(tmp_path):
    job(tmp_path, leave_unfinished=True)
    assert not is_done(tmp_path) and sessions(tmp_path)[-1]["finished"] is not None


def test_a_locked_folder_raises_run_locked_and_another_config_is_refused(tmp_path):
    job(tmp_path / "a", leave_unfinished=True)
    with run_lock(tmp_path / "a"):
        with pytest.raises(RunLocked):
            with open_run(tmp_path / "a", Cfg(), "net", 1, {}, lock_wait=0.1):
                pass
    with pytest.raises(ConfigError, match="steps"):
        job(tmp_path / "a", Cfg(steps=5))


def test_a_hosted_job_neither_claims_nor_locks_and_syncs_before_each_record(tmp_path):
    """As on a Ray node: the driver holds the lock; sync() sees the folder as it stood after
    the previous record (the files of a step are complete before the next step is added)."""
    seen = []
    with run_lock(tmp_path):  # the driver's lock, held elsewhere
        with hosted(lambda: seen.append(len(read_jsonl(tmp_path / "metrics.jsonl")))):
            assert job(tmp_path) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert seen == [0, 1, 2] and is_done(tmp_path)
    assert not (tmp_path / "config.yaml").exists()  # claimed by the driver, not here


def test_provenance_records_the_driver_that_launched_the_job(tmp_path):
    driver = {"command": "run.py configs/mnist_table1.yaml --launcher ray", "git_commit": "abc"}
    with launched_by(driver):
        job(tmp_path / "remote")
    job(tmp_path / "here")
    remote, here = sessions(tmp_path / "remote")[0], sessions(tmp_path / "here")[0]
    assert (remote["command"], remote["git_commit"]) == (driver["command"], "abc")
    assert here["command"] == " ".join(sys.argv) and here["git_commit"] == git_commit()


def test_cpu_kind_names_the_family_and_model_and_the_widest_vectors():
    zen4 = ("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse2 avx2 avx512f\nprocessor\t: 1\ncpu family\t: 25\n")
    assert cpu_kind(zen4).startswith("AMD EPYC (family 25, model 17), AVX-512, ")
    assert cpu_kind("model name\t: Some CPU\nflags\t\t: fpu avx2\n").startswith(
        "Some CPU, AVX2, ")
    assert ", no AVX2, " in cpu_kind("model name\t: Old\nflags\t\t: fpu sse2\n")
