"""Configs that fail well: one clear line naming the key or file, exit code 2, no traceback."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.core.config import ConfigError
from experiments.cli import load_experiment
from run import cli

REPO = Path(__file__).resolve().parent.parent
GOOD = """
experiment: tiny
seeds: [1]
defaults:
  model: {conv: [{channels: 4, k: 20}], hidden: {units: 10, k: 3, density: 0.5}}
networks:
  net: {label: Net}
"""


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(*args):
    """run.py in a fresh process (what a user sees: exit code, stderr, no traceback)."""
    return subprocess.run([sys.executable, "run.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def run_inprocess(capsys, *args):
    """run.py's entry point in this process (same code path, without the 2 s interpreter start)."""
    code = cli([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_config_resolves_defaults_and_overrides(tmp_path):
    exp = load_experiment(write(tmp_path, GOOD), ["train.epochs=3", "seeds=[5, 6]"])
    job = exp.jobs["net"]
    assert exp.seeds == [5, 6] and job.train.epochs == 3 and job.model.hidden.k == 3
    assert job.model.conv[0].k == 20 and job.train.lr == 0.01  # TrainConfig's own default


BAD = [
    ("defaults:\n  train: {lrr: 0.1}", "defaults.train.lrr: unknown key"),
    ("defaults:\n  train: {lr: fast}", "train.lr: expected a number, got str 'fast'"),
    ("defaults:\n  train: {epochs: 2.5}", "train.epochs: expected an integer"),
    ("defaults:\n  model: {hidden: {units: 10, k: 11}}", "model.hidden.k: must be in 1..10"),
    ("defaults:\n  model: {conv: [{channels: 4, k: 999}]}", "model.conv[0].k: must be in 1..576"),
    ("defaults:\n  model: {hidden: {units: 10, density: 0}}", "hidden.density: must be in (0, 1]"),
    ("defaults:\n  model: {hidden: {units: 10, density: 1.5}}",
     "hidden.density: must be in (0, 1]"),
    ("defaults:\n  model: {hidden: {units: 10, density: 0.3, dropconnect: 0.7}}",
     "hidden.dropconnect: a layer has fixed sparse weights (density < 1) or DropConnect"),
    ("defaults:\n  model: {hidden: {units: 10, dropconnect: 1.0}}",
     "hidden.dropconnect: must be in [0, 1), got 1.0"),
    ("defaults:\n  model: {conv: [{channels: 4, dropconnect: -0.1}]}",
     "model.conv[0].dropconnect: must be in [0, 1)"),
    ("defaults:\n  model: {dropout: 1.0}", "dropout: must be in [0, 1), got 1.0"),
    ("seeds: 42", "seeds: expected a non-empty list of integers"),
    ("run: [nope]", "run: unknown network 'nope'"),
    ("colour: red", "colour: unknown key"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_values_are_reported_with_their_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=_literal(message)):
        load_experiment(write(tmp_path, GOOD + extra))


def _literal(text):
    import re
    return re.escape(text)


@pytest.mark.slow  # a real process; the same errors are tested in-process above
def test_cli_process_prints_one_line_and_exits_2_before_any_work(tmp_path):
    extra, message = BAD[0]
    path = write(tmp_path, GOOD + extra)
    result = run_cli(path, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert message in result.stderr and str(path) in result.stderr
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("extra, message", BAD[1:])
def test_cli_prints_one_line_and_exits_2_before_any_work(tmp_path, capsys, extra, message):
    path = write(tmp_path, GOOD + extra)
    code, out, err = run_inprocess(capsys, path, "--out", tmp_path / "out")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert message in err and str(path) in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_missing_files_are_named(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, tmp_path / "nope.yaml")
    assert code == 2 and "nope.yaml: config file not found" in err
    path = write(tmp_path, "include: missing.yaml\n" + GOOD)
    code, _, err = run_inprocess(capsys, path, "--describe", "--out", tmp_path / "out")
    assert code == 2 and "missing.yaml: config file not found" in err


def test_bad_override_is_named(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, write(tmp_path, GOOD), "--set", "train.epochs=many",
                                 "--describe")
    assert code == 2 and "train.epochs: expected an integer" in err
    code, _, err = run_inprocess(capsys, write(tmp_path, GOOD), "--set", "epochs")
    assert code == 2 and "expected KEY=VALUE" in err


def test_describe_writes_table3_with_counts(tmp_path, capsys):
    code, out, err = run_inprocess(capsys, "configs/mnist_sparse.yaml", "--describe",
                                   "--out", tmp_path)
    assert code == 0, err
    assert "Sparse CNN-2: 776,606 parameters, 274,706 non-zero" in out
    networks = (tmp_path / "mnist_sparse" / "networks.csv").read_text()
    assert "776606,274706" in networks and "k=400 of 4608" in networks
    with open(tmp_path / "mnist_sparse" / "multiply_adds.csv") as f:
        conv2 = next(r for r in csv.DictReader(f) if r["layer"] == "conv2")
    assert (int(conv2["dense"]), int(conv2["effective_k_over_n"])) == (3276800, 426667)
    assert 400_000 < int(conv2["effective_clean"]) < 800_000  # 8*8*64*32*25 * 600/4608
    assert 300_000 < int(conv2["effective_noise_0.5"]) < 800_000  # border winners reach less
    assert conv2["measured_on"] == "shipped weights, first 1,000 test images"


def test_describe_counts_an_untrained_network_by_k_over_n(tmp_path, capsys):
    code, out, err = run_inprocess(capsys, "configs/mnist_sparse.yaml", "--describe",
                                   "--set", "model.hidden.units=500", "--out", tmp_path)
    assert code == 0, err
    costs = (tmp_path / "mnist_sparse" / "multiply_adds.csv").read_text()
    assert "sparse_cnn2,linear,512000,67456,,,k/n only" in costs  # 1024*500 * 450/1024 * 307/1024


def test_a_network_variant_states_only_how_it_differs_from_its_base(tmp_path):
    text = GOOD + ("  variant:\n    base: net\n    label: Variant\n"
                   "    model: {hidden: {units: 10, density: 1.0, dropconnect: 0.5}}\n")
    exp = load_experiment(write(tmp_path, text))
    base, variant = exp.jobs["net"], exp.jobs["variant"]
    assert variant.label == "Variant" and variant.model.hidden.dropconnect == 0.5
    assert variant.model.conv == base.model.conv and variant.train == base.train
    assert base.model.hidden.dropconnect == 0.0


@pytest.mark.parametrize("base, problem", [("nope", "no such network"), ("loop", "a loop")])
def test_a_bad_base_is_named(tmp_path, base, problem):
    text = GOOD + f"  loop:\n    base: {base}\n"
    with pytest.raises(ConfigError, match=f"networks.loop.base: '{base}': {problem}"):
        load_experiment(write(tmp_path, text))


@pytest.mark.parametrize("out", ["results/reference", "results/reference/mnist_sparse"])
def test_runs_refuse_to_write_into_the_shipped_reference_records(capsys, out):
    before = sorted(p.name for p in (REPO / out).iterdir())
    code, _, err = run_inprocess(capsys, REPO / "configs" / "mnist_sparse.yaml", "--smoke",
                                 "--out", REPO / out)
    assert code == 2 and err.strip().count("\n") == 0
    assert "holds the shipped reference records, which runs never write" in err
    assert sorted(p.name for p in (REPO / out).iterdir()) == before  # nothing was written
