"""Held-out model selection: data.validation holds training images out, the sweep scores them,
and the report's "valid" selection reads the epoch they pick."""

import torch

from data import DataConfig, load_dataset
from data.mnist import validation_split
from experiments.cli import load_experiment, run_experiment
from experiments.core.selection import selections, validation_epoch
from experiments.report import tables as report


def test_the_split_is_fixed_disjoint_and_in_training_order():
    keep, held = validation_split(60_000, 5_000)
    assert len(held) == 5_000 and len(keep) == 55_000
    assert len(set(keep.tolist()) | set(held.tolist())) == 60_000
    assert torch.equal(held, validation_split(60_000, 5_000)[1])  # the same for every run
    assert (keep[1:] > keep[:-1]).all() and (held[1:] > held[:-1]).all()


def test_training_never_sees_the_held_out_images(mnist_root):
    ds = load_dataset(DataConfig(root=str(mnist_root), validation=1_000))
    x_val, y_val = ds.validation_set()
    assert ds.num_train == 59_000 and len(y_val) == 1_000
    full = load_dataset(DataConfig(root=str(mnist_root)))
    keep, held = validation_split(60_000, 1_000)
    assert torch.equal(x_val, full.train_x[held]) and torch.equal(y_val, full.train_y[held])
    assert torch.equal(ds.train_x, full.train_x[keep]) and torch.equal(ds.train_y, full.train_y[keep])
    assert load_dataset(DataConfig(root=str(mnist_root))).validation_set() is None


def test_validation_selection_applies_only_when_every_record_has_it():
    records = [{"test_accuracy": 99.0, "validation_accuracy": 98.0, "epoch": 0},
               {"test_accuracy": 99.2, "validation_accuracy": 97.5, "epoch": 1}]
    assert validation_epoch(records)["epoch"] == 0
    assert "valid" in selections([records])
    assert "valid" not in selections([records, [{"test_accuracy": 99.0}]])


def test_a_held_out_smoke_run_records_and_reports_the_valid_epoch(mnist_root, tmp_path):
    suite = load_experiment("configs/mnist_table1_heldout.yaml",
                            ["run=[sparse_cnn2]", "data.validation=300",
                             f"data.root={mnist_root}"], smoke=True)
    exp = run_experiment(suite, tmp_path, threads=1)
    record = (exp / "sparse_cnn2" / "seed-42" / "metrics.jsonl").read_text()
    assert '"num_validation": 300' in record and '"validation_accuracy"' in record
    context = report.load_report(exp)
    table = report.results_table(context)
    assert "valid" in context.selections and table.noise_valid_mean.notna().all()
