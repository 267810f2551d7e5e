"""The training job on tiny real MNIST: schedules, determinism, resumption, suites, --smoke."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.train import job as job_module
from experiments.core.config import ConfigError
from experiments.cli import load_experiment
from experiments.train.job import run_job
from experiments.core.records import read_jsonl
from models import build_network
from experiments.cli import run_experiment
from run import cli
from tests.helpers import TINY, strip_timing

REPO = Path(__file__).resolve().parent.parent


def tiny_job(mnist_root, network="sparse_cnn2", epochs=3, extra=()):
    exp = load_experiment(REPO / "configs/mnist_table1.yaml",
                          [*TINY, f"train.epochs={epochs}", f"data.root={mnist_root}", *extra])
    return exp.jobs[network]


def test_learning_rate_boost_and_batch_size_schedules(mnist_root, tmp_path):
    records = run_job(tiny_job(mnist_root), "sparse_cnn2", 42, tmp_path, progress=False)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert [r["lr"] for r in records] == pytest.approx([0.02, 0.02 * 0.8, 0.02 * 0.64])
    assert [r["boost_strength"] for r in records] == pytest.approx([1.5, 1.275, 1.08375])
    assert [r["batch_size"] for r in records] == [4, 64, 64]
    r = records[-1]
    assert r["noise_score"] == sum(r["noise_correct"].values())
    assert r["test_accuracy"] == pytest.approx(100 * r["noise_correct"]["0.00"] / 40)
    assert (tmp_path / "done").is_file() and (tmp_path / "checkpoint.pt").is_file()
    provenance = json.loads((tmp_path / "provenance.json").read_text())["sessions"]
    assert provenance[0]["epochs"] == [0, 3] and provenance[0]["wall_seconds"] > 0


def test_each_epoch_records_duty_cycle_entropy_and_weight_norms(mnist_root, tmp_path):
    """The per-epoch layer fields equal what the trained model says, computed by hand."""
    job = tiny_job(mnist_root, epochs=2)
    records = run_job(job, "sparse_cnn2", 42, tmp_path, progress=False)
    for r in records:
        assert set(r["duty_cycle_entropy"]) == {"kwinners1", "kwinners2", "kwinners"}
        assert set(r["weight_norm"]) == {"conv1", "conv2", "linear", "output"}
        assert all(0.0 < h <= 1.0 for h in r["duty_cycle_entropy"].values())
    model = build_network(job.model)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    duty = model.kwinners.duty_cycle.double()
    p = duty[duty > 0] / duty.sum()
    assert records[-1]["duty_cycle_entropy"]["kwinners"] == pytest.approx(
        float(-(p * p.log()).sum()) / math.log(700))
    w = model.linear.module.weight.detach().double()  # fixed 30% weights: the zeros count as zeros
    assert records[-1]["weight_norm"]["linear"] == pytest.approx(
        float(((w ** 2).sum(dim=1) ** 0.5).mean()), rel=1e-6)
    assert records[0]["weight_norm"] != records[1]["weight_norm"]  # they move with training


def test_dense_network_records_no_boost(mnist_root, tmp_path):
    records = run_job(tiny_job(mnist_root, "dense_cnn2", 1), "dense_cnn2", 1, tmp_path,
                      progress=False)
    assert records[0]["boost_strength"] is None and records[0]["batch_size"] == 64


def test_same_seed_same_metrics_and_other_seed_differs(mnist_root, tmp_path):
    job = tiny_job(mnist_root, epochs=2)
    a = run_job(job, "sparse_cnn2", 7, tmp_path / "a", progress=False)
    b = run_job(job, "sparse_cnn2", 7, tmp_path / "b", progress=False)
    c = run_job(job, "sparse_cnn2", 8, tmp_path / "c", progress=False)
    assert strip_timing(a) == strip_timing(b)
    assert strip_timing(a) != strip_timing(c)


def test_interrupted_run_resumes_to_the_same_final_metrics(mnist_root, tmp_path, monkeypatch):
    job = tiny_job(mnist_root, epochs=3)
    reference = run_job(job, "sparse_cnn2", 3, tmp_path / "ref", progress=False)
    real_run_epoch = job_module.run_epoch

    def interrupt_at_epoch_2(*args, **kwargs):
        if kwargs["epoch"] == 2:
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(job_module, "run_epoch", interrupt_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_job(job, "sparse_cnn2", 3, tmp_path / "cut", progress=False)
    assert len(read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 2
    assert not (tmp_path / "cut" / "done").exists()
    monkeypatch.setattr(job_module, "run_epoch", real_run_epoch)
    resumed = run_job(job, "sparse_cnn2", 3, tmp_path / "cut", progress=False)
    assert strip_timing(resumed) == strip_timing(reference)
    sessions = json.loads((tmp_path / "cut" / "provenance.json").read_text())["sessions"]
    assert [s["epochs"] for s in sessions] == [[0, 3], [2, 3]]
    assert sessions[0]["finished"] is None and sessions[1]["finished"]


def test_suite_skips_finished_jobs_and_refuses_to_overwrite(mnist_root, tmp_path, capsys):
    overrides = [*TINY, "train.epochs=1", f"data.root={mnist_root}", "seeds=[1, 2]",
                 "run=[sparse_cnn1]"]
    exp = load_experiment(REPO / "configs/mnist_table1.yaml", overrides)
    run_experiment(exp, tmp_path)
    done = tmp_path / "mnist_table1" / "sparse_cnn1" / "seed-2" / "done"
    stamp = done.stat().st_mtime_ns
    run_experiment(exp, tmp_path)
    assert "2 already done, 0 to run" in capsys.readouterr().out
    assert done.stat().st_mtime_ns == stamp
    changed = load_experiment(REPO / "configs/mnist_table1.yaml", overrides + ["train.lr=0.5"])
    with pytest.raises(ConfigError, match="different config .*train.lr.*--force"):
        run_experiment(changed, tmp_path)
    run_experiment(changed, tmp_path, force=True)
    record = read_jsonl(done.parent / "metrics.jsonl")[0]
    assert record["lr"] == 0.5


@pytest.mark.slow  # a pool of 2 processes; the launcher's in-process paths are tested fast
def test_parallel_jobs_finish_every_run(mnist_root, tmp_path):
    overrides = [*TINY, "train.epochs=1", f"data.root={mnist_root}", "seeds=[1]",
                 "run=[sparse_cnn1, dense_cnn2_sp3]"]
    exp = load_experiment(REPO / "configs/mnist_table1.yaml", overrides)
    run_experiment(exp, tmp_path / "par", workers=2)
    for name in exp.run:
        run_dir = tmp_path / "par" / "mnist_table1" / name / "seed-1"
        assert (run_dir / "done").is_file()
        assert len(read_jsonl(run_dir / "metrics.jsonl")) == 1


def check_smoke_records(config, out, networks=None):
    exp = load_experiment(REPO / config, smoke=True)
    for name in networks or exp.run:
        records = read_jsonl(out / "smoke" / exp.experiment / name / "seed-42" / "metrics.jsonl")
        assert len(records) == 1 and records[0]["num_test"] == 200
        assert len(records[0]["noise_correct"]) == 11
    assert (out / "smoke" / exp.experiment / "table.md").is_file()


@pytest.mark.parametrize("config, networks", [
    ("configs/mnist_sparse.yaml", None),
    ("configs/mnist_table1.yaml", ["dense_cnn2", "dense_cnn2_sp3"]),
])
def test_smoke_runs_mnist_configs_end_to_end(config, networks, mnist_root, tmp_path, capsys):
    """run.py's entry point in this process; the full 8-network smoke is the slow test below."""
    args = [config, "--smoke", "--out", str(tmp_path)]
    if networks:
        args += ["--set", f"run=[{', '.join(networks)}]"]
    assert cli(args) == 0, capsys.readouterr().err[-2000:]
    check_smoke_records(config, tmp_path, networks)


@pytest.mark.slow
def test_smoke_runs_every_mnist_table1_network_as_a_process(mnist_root, tmp_path):
    config = "configs/mnist_table1.yaml"
    result = subprocess.run([sys.executable, "run.py", config, "--smoke", "--out", tmp_path],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    check_smoke_records(config, tmp_path)


def test_new_config_keys_do_not_invalidate_an_existing_run(tmp_path):
    from experiments.core.runs import claim_dir
    claim_dir(tmp_path, {"seed": 1, "train": {"lr": 0.1}})
    claim_dir(tmp_path, {"seed": 1, "train": {"lr": 0.1, "new_option": False}})  # accepted
    assert "new_option" in (tmp_path / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"differs in train\.lr"):
        claim_dir(tmp_path, {"seed": 1, "train": {"lr": 0.2, "new_option": False}})
    with pytest.raises(ConfigError, match=r"differs in seed"):
        claim_dir(tmp_path, {"train": {"lr": 0.1, "new_option": False}})


def test_new_keys_in_the_layers_of_a_list_do_not_invalidate_a_run(tmp_path):
    from experiments.core.runs import claim_dir
    claim_dir(tmp_path, {"model": {"conv": [{"channels": 30}, {"channels": 30}]}})
    claim_dir(tmp_path, {"model": {"conv": [{"channels": 30, "dropconnect": 0.0},
                                            {"channels": 30, "dropconnect": 0.0}]}})
    with pytest.raises(ConfigError, match=r"differs in model\.conv\[1\]\.channels"):
        claim_dir(tmp_path, {"model": {"conv": [{"channels": 30, "dropconnect": 0.0},
                                                {"channels": 64, "dropconnect": 0.0}]}})
    with pytest.raises(ConfigError, match=r"differs in model\.conv"):
        claim_dir(tmp_path, {"model": {"conv": [{"channels": 30, "dropconnect": 0.0}]}})


def test_the_optimizer_matches_the_per_parameter_loop_bit_for_bit():
    import torch
    import torch.nn.functional as F
    from experiments.train.loop import make_optimizer
    from models import build_network
    job = tiny_job(Path("datasets"), "sparse_cnn2_dsw")
    states = []
    for fast in (True, False):
        torch.manual_seed(0)
        net = build_network(job.model)
        opt = make_optimizer(net, job.train) if fast else torch.optim.SGD(
            net.parameters(), lr=job.train.lr, momentum=job.train.momentum, foreach=False)
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            x, y = torch.randn(4, 1, 28, 28, generator=generator), torch.randint(0, 10, (4,))
            opt.zero_grad()
            F.nll_loss(net(x), y).backward()
            opt.step()
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_sparse_eval_engine_scores_as_the_plain_sweep(mnist_root, tmp_path):
    plain = run_job(tiny_job(mnist_root, epochs=1), "sparse_cnn2", 3, tmp_path / "plain",
                    progress=False)
    job = tiny_job(mnist_root, epochs=1, extra=["eval.engine=sparse"])
    sparse = run_job(job, "sparse_cnn2", 3, tmp_path / "sparse", progress=False)
    assert [r["noise_correct"] for r in sparse] == [r["noise_correct"] for r in plain]
    assert [r["train_loss"] for r in sparse] == [r["train_loss"] for r in plain]


def test_a_run_folder_from_before_eval_engine_resumes_with_the_plain_default(mnist_root,
                                                                              tmp_path):
    import yaml
    job = tiny_job(mnist_root, epochs=2)
    folder = tmp_path / "run"
    first = run_job(tiny_job(mnist_root, epochs=1), "sparse_cnn2", 3, folder, progress=False)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    del config["eval"]  # as a folder written before the key existed
    config["train"]["epochs"] = 2
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "done").unlink()
    resumed = run_job(job, "sparse_cnn2", 3, folder, progress=False)
    assert strip_timing(resumed[:1]) == strip_timing(first) and len(resumed) == 2
    assert yaml.safe_load((folder / "config.yaml").read_text())["eval"] == {"engine": "plain"}


def test_an_unknown_eval_engine_is_a_config_error(mnist_root):
    with pytest.raises(ConfigError, match="eval.engine: must be one of plain, sparse"):
        tiny_job(mnist_root, extra=["eval.engine=fast"])
