"""benchmarks/check_device.py: the k-winners twins on another device see the CPU layers' exact
inputs, and a real difference in winners or duty cycles is caught (here the "other device" is
the CPU's torch ops, the code every GPU runs)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_device",
                                               REPO / "benchmarks" / "check_device.py")
check_device = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_device)

STEPS, TEST = 3, 40


def run(name, **kwargs):
    job = check_device.load_experiment(REPO / "configs" / "mnist_table1.yaml").jobs[name]
    x, y, x_test = check_device.data("random", STEPS * job.train.batch_size, TEST)
    return job, check_device.compare(job.model, job.train, "cpu", STEPS, x, y, x_test, **kwargs)


def test_torch_ops_twin_matches_the_kernel_over_training_and_eval():
    job, r = run("sparse_cnn2")  # three k-winners layers: two KWinners2d, one KWinners
    assert r["rows"] == 3 * (STEPS * job.train.batch_size + TEST)
    assert r["rows_differ"] == 0 and r["rows_tie"] == 0  # Gaussian inputs: no exact ties
    assert r["duty_max_diff"] < 1e-6 and r["boost_max_diff"] < 1e-6
    assert r["duty_mean"] > 0.05  # the duty cycles did move from zero


def losers(twin, x):
    """A twin with the wrong winner rule: the raw values at the k smallest boosted scores."""
    return -twin(-x)


def test_a_different_winner_rule_is_reported():
    job, r = run("sparse_cnn2", twin_forward=losers)
    assert r["rows_differ"] == r["rows"]
    assert r["duty_max_diff"] > 1e-3
    assert check_device.main(["--device", "cpu", "--steps", "1", "--test-images", "8",
                              "--data", "random", "--only", "sparse_cnn2"],
                             twin_forward=losers) == 1


def test_an_unknown_network_is_one_line_and_exit_2(capsys):
    assert check_device.main(["--device", "cpu", "--only", "sparse_cnn9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sparse_cnn9" in err and "sparse_cnn2" in err
