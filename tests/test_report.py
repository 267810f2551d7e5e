"""The report: numbers recomputed by hand from a small fake set of run records.

Fake MNIST experiment (full test set of 10,000, 11 noise levels, so it is compared with the
paper's Table 1 from experiments/core/published.yaml):

    dense_cnn2  seed 42  test [99.0, 99.3, 99.3]  noise [90000, 95000, 97000]   done
                seed 43  test [99.4, 99.2, 99.1]  noise [96000, 98000, 99000]   done
    sparse_cnn2 seed 42  test [98.0, 99.0, 98.5]  noise [100000, 103000, 104000] done
                seed 43  test [99.2, 99.1, 99.2]  noise [101000, 102000, 105000] done
                seed 44  test [98.9, 99.05]       noise [102000, 104000]        unfinished

Best epoch (first maximum of test accuracy): dense 42 -> epoch 1 (ties with 2), dense 43 ->
epoch 0, sparse 42 -> 1, sparse 43 -> 0 (ties with 2), sparse 44 -> 1.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import pstdev

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from data import DataConfig, dataset_info
from data.noise import PAPER_LEVELS
from experiments.core import runs as core_runs
from experiments.core.selection import best_epoch, last_epoch
from experiments.report import compare
from experiments.report import tables as report
from experiments.report.write import build_figures, write_report

REPO = Path(__file__).resolve().parent.parent
LEVELS = list(PAPER_LEVELS)

DENSE = {42: ([99.0, 99.3, 99.3], [90000, 95000, 97000]),
         43: ([99.4, 99.2, 99.1], [96000, 98000, 99000])}
SPARSE = {42: ([98.0, 99.0, 98.5], [100000, 103000, 104000]),
          43: ([99.2, 99.1, 99.2], [101000, 102000, 105000]),
          44: ([98.9, 99.05], [102000, 104000])}


def fake_record(epoch, test_accuracy, noise_score, num_test):
    """An epoch record whose clean count matches ``test_accuracy`` and whose counts over all
    levels sum to ``noise_score``."""
    clean = round(test_accuracy * num_test / 100)
    rest, extra = divmod(noise_score - clean, len(LEVELS) - 1)
    counts = [clean] + [rest + (1 if i < extra else 0) for i in range(len(LEVELS) - 1)]
    correct = {f"{level:.2f}": c for level, c in zip(LEVELS, counts)}
    return {"epoch": epoch, "test_accuracy": test_accuracy, "num_test": num_test,
            "noise_accuracy": {k: 100.0 * c / num_test for k, c in correct.items()},
            "noise_correct": correct, "noise_score": sum(counts), "seconds": 1.0}


def write_run(exp_dir, network, seed, tests, noises, epochs=3, done=True, dataset="mnist",
              source="real", num_test=10000, test_limit=None, label=None, root=None):
    """A run folder as experiments/train/job.py leaves it (only the fields the report reads)."""
    folder = Path(exp_dir) / network / f"seed-{seed}"
    folder.mkdir(parents=True)
    config = {"network": network, "seed": seed, "label": label or network,
              "data": {"name": dataset, "source": source, "root": str(root or exp_dir / "none"),
                       "train_limit": None, "test_limit": test_limit},
              "train": {"epochs": epochs}, "noise": {"levels": LEVELS}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    info = dataset_info(DataConfig(name=dataset, source=source))
    (folder / "dataset.json").write_text(json.dumps(info))
    records = [fake_record(e, t, n, num_test) for e, (t, n) in enumerate(zip(tests, noises))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    session = {"started": "2024-01-01T00:00:00+00:00", "finished": None, "wall_seconds": None,
               "epochs": [0, epochs], "git_commit": "abc1234", "torch": "2.0",
               "device": "FakeGPU 80GB"}
    (folder / "provenance.json").write_text(json.dumps({"sessions": [session]}))
    if done:
        (folder / "done").write_text("{}\n")


@pytest.fixture
def mnist_dir(tmp_path):
    exp_dir = tmp_path / "mnist_fake"
    for seed, (tests, noises) in DENSE.items():
        write_run(exp_dir, "dense_cnn2", seed, tests, noises, label="Dense CNN-2")
    for seed, (tests, noises) in SPARSE.items():
        write_run(exp_dir, "sparse_cnn2", seed, tests, noises, done=seed != 44,
                  label="Sparse CNN-2")
    return exp_dir


def table_row(exp_dir, network):
    context = report.load_report(exp_dir)
    table = report.results_table(context)
    return table.set_index("network").loc[network], context


def test_best_epoch_is_the_first_maximum_of_test_accuracy():
    records = [{"epoch": 0, "test_accuracy": 98.0}, {"epoch": 1, "test_accuracy": 99.0},
               {"epoch": 2, "test_accuracy": 99.0}]
    assert best_epoch(records)["epoch"] == 1
    assert last_epoch(records)["epoch"] == 2


def test_population_std():
    assert report.mean_std([99.3, 99.4]) == pytest.approx((99.35, 0.05), abs=1e-12)
    assert all(np.isnan(report.mean_std([])))


def test_dense_scores_and_deltas_by_hand(mnist_dir):
    row, _ = table_row(mnist_dir, "dense_cnn2")
    # best: seed 42 epoch 1 (99.3, 95000; not the tied epoch 2), seed 43 epoch 0 (99.4, 96000)
    assert row.best_epochs == "1, 0"
    assert row.test_best_mean == pytest.approx(99.35, abs=1e-9)
    assert row.test_best_std == pytest.approx(0.05, abs=1e-9)  # ddof=1 would be 0.0707
    assert row.noise_best_mean == pytest.approx(95500)
    assert row.noise_best_std == pytest.approx(500)
    # last: (99.3, 97000) and (99.1, 99000)
    assert row.test_last_mean == pytest.approx(99.2, abs=1e-9)
    assert row.test_last_std == pytest.approx(0.1, abs=1e-9)
    assert row.noise_last_mean == pytest.approx(98000)
    assert row.noise_last_std == pytest.approx(1000)
    # paper Table 1, Dense CNN-2: 99.31 +- 0.06, 97,040 +- 2,853
    assert (row.paper_test_mean, row.paper_test_std) == (99.31, 0.06)
    assert (row.paper_noise_mean, row.paper_noise_std) == (97040, 2853)
    assert row.test_best_delta == pytest.approx(0.04 / 0.06, abs=1e-9)
    assert row.noise_best_delta == pytest.approx(-1540 / 2853)
    assert row.test_last_delta == pytest.approx(-0.11 / 0.06, abs=1e-9)
    assert row.noise_last_delta == pytest.approx(960 / 2853)
    assert row.status == "finished" and row.compared_with_paper


def test_sparse_scores_include_the_partial_run_by_hand(mnist_dir):
    row, _ = table_row(mnist_dir, "sparse_cnn2")
    # best: 42 -> (99.0, 103000), 43 -> epoch 0 (99.2, 101000; not the tied epoch 2),
    # 44 (unfinished, 2 epochs) -> (99.05, 104000)
    assert row.best_epochs == "1, 0, 1"
    assert row.test_best_mean == pytest.approx((99.0 + 99.2 + 99.05) / 3, abs=1e-9)
    assert row.test_best_std == pytest.approx(pstdev([99.0, 99.2, 99.05]), abs=1e-9)
    assert row.noise_best_mean == pytest.approx((103000 + 101000 + 104000) / 3)
    assert row.noise_best_std == pytest.approx(pstdev([103000, 101000, 104000]))
    # last: 98.5/104000, 99.2/105000, and the unfinished run's latest epoch 99.05/104000
    assert row.test_last_mean == pytest.approx((98.5 + 99.2 + 99.05) / 3, abs=1e-9)
    assert row.noise_last_std == pytest.approx(pstdev([104000, 105000, 104000]))
    assert row.noise_best_delta == pytest.approx(((103000 + 101000 + 104000) / 3 - 103764)
                                                 / 1125)
    assert (row.runs, row.runs_done, row.status) == (3, 2, "partial")
    assert (row.epochs_done_min, row.epochs_done_max, row.epochs_planned) == (2, 3, 3)


def test_write_report_files_labels_and_order(mnist_dir):
    paths = write_report(mnist_dir)
    names = {p.name for p in paths}
    assert {"table.md", "table.csv", "noise_curves.png", "noise_curves.csv", "epochs.png",
            "epochs.csv"} <= names
    assert "noisy_examples.png" not in names  # no noisy_examples.npz in the folder
    assert "comparison.md" not in names  # no shipped records of this experiment
    md = (mnist_dir / "table.md").read_text()
    assert "seeds 42-44, epochs 3" in md and "FakeGPU 80GB" in md
    assert "abc1234" in md and "compared with Table 1" in md
    assert "99.35 ± 0.05 (+0.67 σ)" in md and "95,500 ± 500 (-0.54 σ)" in md
    assert "2 of 3 (PARTIAL)" in md and "2-3 of 3" in md
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| Dense CNN-2", "| Sparse CNN-2"]


def test_noise_curves_frame_and_paper_points(mnist_dir):
    context = report.load_report(mnist_dir)
    curves = report.noise_curve_frame(context).set_index(["network", "selection", "level"])
    clean = curves.loc[("dense_cnn2", "best", 0.0)]
    assert clean["mean"] == pytest.approx(99.35) and clean["std"] == pytest.approx(0.05)
    assert clean.seeds == 2 and np.isnan(clean.paper_fig5b)
    assert curves.loc[("dense_cnn2", "last", 0.5)].paper_fig5b == 41  # Fig. 5B, Dense CNN-2
    assert curves.loc[("sparse_cnn2", "last", 0.0)].paper_fig5b == 99


def test_epoch_frame_means_over_the_seeds_that_reached_each_epoch(mnist_dir):
    frame = report.epoch_frame(report.load_report(mnist_dir))
    means = frame[(frame.seed == "mean") & (frame.network == "sparse_cnn2")].set_index("epoch")
    assert means.loc[1, "test_accuracy"] == pytest.approx((99.0 + 99.1 + 99.05) / 3)
    assert means.loc[2, "noise_score"] == pytest.approx((104000 + 105000) / 2)  # 44 stopped


def test_not_started_run_and_network_still_build(mnist_dir):
    write_run(mnist_dir, "sparse_cnn1", 42, [], [], done=False)
    context = report.load_report(mnist_dir)
    table = report.results_table(context).set_index("network")
    assert list(table.index) == ["dense_cnn2", "sparse_cnn1", "sparse_cnn2"]  # paper order
    assert table.loc["sparse_cnn1", "status"] == "not started"
    assert np.isnan(table.loc["sparse_cnn1", "test_best_mean"])
    assert "0 of 1 (NOT STARTED)" in report.markdown_frame(table.reset_index(), context
                                                           ).to_string()


def test_queued_runs_with_only_their_config_still_build(mnist_dir):
    """A suite claims every job's folder (config.yaml) before it starts: --report meanwhile."""
    write_run(mnist_dir, "sparse_cnn1", 42, [], [], done=False)
    for name in ("dataset.json", "metrics.jsonl", "provenance.json"):
        (mnist_dir / "sparse_cnn1" / "seed-42" / name).unlink()
    table = report.results_table(report.load_report(mnist_dir)).set_index("network")
    assert table.loc["sparse_cnn1", "status"] == "not started"
    assert table.loc["dense_cnn2", "status"] != "not started"
    assert any(p.name == "table.md" for p in write_report(mnist_dir))


def test_subset_runs_are_not_compared(tmp_path):
    exp_dir = tmp_path / "smoke"
    write_run(exp_dir, "dense_cnn2", 1, [50.0], [900], epochs=1, num_test=200, test_limit=200)
    row, context = table_row(exp_dir, "dense_cnn2")
    assert "data.test_limit=200" in context.problem
    assert np.isnan(row.test_best_delta) and not row.compared_with_paper
    assert row.paper_test_mean == 99.31  # still shown, for reference
    assert "not compared" in report.table_title(context)


def test_synthetic_gsc_is_labelled_everywhere_and_not_compared(tmp_path):
    exp_dir = tmp_path / "gsc_fake"
    for seed in (42, 43):
        write_run(exp_dir, "sparse_cnn2", seed, [90.0, 92.0], [8000, 9000], epochs=2,
                  dataset="gsc", source="synthetic", num_test=2552)
    row, context = table_row(exp_dir, "sparse_cnn2")
    phrase = "synthetic stand-in, not the Speech Commands dataset"
    assert phrase in report.table_title(context) and "not compared" in report.table_title(context)
    assert np.isnan(row.test_best_delta) and not row.compared_with_paper
    assert phrase in row.data
    for fig, frame in build_figures(context).values():
        assert phrase in fig.get_suptitle()
        assert frame.data.str.contains(phrase).all()
    write_report(exp_dir)
    md = (exp_dir / "table.md").read_text()
    assert md.startswith(f"# Google Speech Commands ({phrase})")
    assert "σ)" not in md and "paper, reference only" in md
    assert "noisy_examples.png" not in os.listdir(exp_dir)


def test_comparison_with_the_reference_records_by_hand(mnist_dir, tmp_path, monkeypatch):
    """This run = mnist_dir; the reference: the same experiment with other scores."""
    shipped = tmp_path / "reference"
    for seed, (tests, noises) in {42: ([99.2, 99.3], [96000, 97000]),
                                  43: ([99.4, 99.1], [97000, 98000])}.items():
        write_run(shipped / mnist_dir.name, "dense_cnn2", seed, tests, noises, epochs=2,
                  label="Dense CNN-2")
    monkeypatch.setattr(core_runs, "REFERENCE", shipped)
    frame = compare.comparison_frame(report.load_report(mnist_dir),
                                     report.load_report(shipped / mnist_dir.name))
    row = frame.set_index("network").loc["dense_cnn2"]
    # this run: best epochs (99.3, 95000), (99.4, 96000); reference: (99.3, 97000), (99.4, 97000)
    assert row.test_mean == pytest.approx(99.35) and row.test_reference_mean == pytest.approx(99.35)
    assert row.noise_reference_mean == pytest.approx(97000)
    assert row.noise_vs_paper == pytest.approx((95500 - 97040) / 2853)
    assert row.noise_reference_vs_paper == pytest.approx((97000 - 97040) / 2853)
    assert row.noise_vs_reference == pytest.approx((95500 - 97000) / 2853)
    assert np.isnan(frame.set_index("network").loc["sparse_cnn2", "test_reference_mean"])
    write_report(mnist_dir)
    md = (mnist_dir / "comparison.md").read_text()
    assert "95,500 ± 500 (-0.5 σ vs paper; -0.5 σ vs reference)" in md
    assert "97,000 ± 0 (-0.0 σ vs paper)" in md and "97,040 ± 2,853" in md
    write_report(shipped / mnist_dir.name)  # the reference's own report compares with nothing
    assert not (shipped / mnist_dir.name / "comparison.md").exists()


def test_report_draws_the_noisy_examples_and_imports_no_torch_or_data(mnist_dir):
    images = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    np.savez_compressed(mnist_dir / core_runs.EXAMPLES, images=images,
                        levels=np.array([0.0, 0.1, 0.2]), row_labels=np.array(["a", "b"]),
                        test_index=np.array([5, 9]), noisy_pixels=np.array([0, 1, 3]),
                        title=np.array("fake examples"))
    code = ("import sys; from experiments.report import write_report; "
            f"write_report({str(mnist_dir)!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'data', 'models')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    frame = pd.read_csv(mnist_dir / "noisy_examples.csv")
    assert list(frame.test_index) == [5, 5, 5, 9, 9, 9] and list(frame.noisy_pixels[:3]) == [0, 1, 3]


def test_notebook_code_runs_in_this_process(mnist_dir, monkeypatch):
    """Every code cell of the notebook, in order, in one namespace (IPython magics dropped,
    ``display`` collecting what it is given): the fast check that the notebook still fits the
    report's API. The slow test below runs it in a real kernel."""
    from matplotlib.figure import Figure
    monkeypatch.setenv("RESULTS_DIR", str(mnist_dir))
    monkeypatch.chdir(REPO / "notebooks")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the first cell inserts the repository
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    namespace = {}
    nb = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            code = "\n".join(line for line in cell.source.splitlines()
                             if not line.lstrip().startswith("%"))
            exec(compile(code, "results.ipynb", "exec"), namespace)
    assert namespace["RESULTS_DIR"] == mnist_dir
    assert namespace["context"].order == ["dense_cnn2", "sparse_cnn2"]
    assert "Dense CNN-2" in namespace["table"].to_string()
    assert isinstance(namespace["fig"], Figure) and namespace["examples"] is None
    assert len(shown) == 3 and "Dense CNN-2" in shown[1].to_string()  # title, table, notes


@pytest.mark.slow  # a Jupyter kernel starting takes seconds; the cells run in-process above
def test_notebook_runs_on_a_fake_results_folder(mnist_dir, monkeypatch):
    from nbclient import NotebookClient
    monkeypatch.setenv("RESULTS_DIR", str(mnist_dir))
    nb = nbformat.read(REPO / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert "Dense CNN-2" in text and "image/png" in text


def test_paired_comparison_by_hand_on_finished_common_seeds(mnist_dir, tmp_path):
    """Sparse - dense on seeds 42 and 43 (44 is unfinished, and dense has no 44): best epochs
    are epoch 1 (99.0) and 0 (99.2) for sparse, 1 (99.3) and 0 (99.4) for dense."""
    from experiments.core.suite import CompareConfig, Suite
    from experiments.report import paired as report_paired
    context = report.load_report(mnist_dir)
    frame = report_paired.paired_frame(context, [("sparse_cnn2", "dense_cnn2")])
    noise = frame[(frame.selection == "best") & (frame.metric == "noise")].iloc[0]
    assert noise.n == 2 and noise.seeds == "42, 43"
    assert noise["mean"] == pytest.approx(((103000 - 95000) + (101000 - 96000)) / 2)
    assert (noise.higher, noise.lower) == (2, 0) and noise.sign_p == pytest.approx(0.5)
    last = frame[(frame.selection == "last") & (frame.metric == "test")].iloc[0]
    assert last["mean"] == pytest.approx(((98.5 - 99.3) + (99.2 - 99.1)) / 2)
    suite = Suite("mnist_fake", [42, 43], {"sparse_cnn2": None, "dense_cnn2": None},
                  ["sparse_cnn2", "dense_cnn2"], tmp_path, compare=CompareConfig("dense_cnn2"))
    paths = report_paired.write_paired(context, suite, mnist_dir)
    assert mnist_dir / "paired.md" in paths
    text = (mnist_dir / "paired.md").read_text()
    assert "| Sparse CNN-2 − Dense CNN-2 | 2 | +6,500 " in text and "**last epoch**" in text


def test_verdicts_sort_comparisons_by_their_interval_and_adjust_p_over_all_of_them():
    from scipy import stats as sp
    from experiments.core.stats import paired
    from experiments.report.paired import verdicts
    base = np.array([100.0, 102.0, 98.0, 101.0, 99.0])
    variants = {"lower": base - [900, 1100, 1000, 950, 1050],  # interval below 0
                "higher": base + [400, 600, 500, 450, 550],
                "same": base + [300, -250, 100, -200, 50],
                "one seed": base[:1] - 5000}  # no interval: left out
    rows = []
    for name, values in variants.items():
        c = paired(values, base[:len(values)])
        rows.append({"label_a": name, "label_b": "Base", "selection": "best", "metric": "noise",
                     **vars(c)})
    rows.append({**rows[0], "metric": "test"})  # another metric: left out
    text = verdicts(pd.DataFrame(rows), "best", "records: here")
    lines = text.splitlines()
    assert [line.split(" | ")[:2] for line in lines[2:5]] == [
        ["| below 0", "lower − Base"], ["| above 0", "higher − Base"], ["| across 0", "same − Base"]]
    assert "| lower − Base | -1,000 [" in lines[2] and "one seed" not in text
    ps = [sp.ttest_rel(variants[n], base).pvalue for n in ("lower", "higher", "same")]
    q = sp.false_discovery_control(ps)
    assert lines[4].endswith(f"| 5 | {ps[2]:.3g} | {q[2]:.3g} |")
    assert lines[-1].startswith("3 comparisons tested together") and text.endswith("here.")


def test_selection_verdicts_say_which_conclusions_change_with_the_held_out_epoch():
    from scipy import stats as sp
    from experiments.core.stats import paired
    from experiments.report.paired import selection_verdicts
    base = np.array([100.0, 102.0, 98.0, 101.0, 99.0])
    # under "best" both A and B are clearly higher than the base; under "valid" B's gain is
    # noise, so B's conclusion changes and A's does not
    scores = {"best": {"A": base + [900, 1100, 1000, 950, 1050],
                       "B": base + [400, 600, 500, 450, 550]},
              "valid": {"A": base + [800, 1000, 900, 850, 950],
                        "B": base + [300, -250, 100, -200, 50]}}
    rows = []
    for selection, nets in scores.items():
        for name, values in nets.items():
            for metric in ("noise", "test"):
                c = paired(values, base)
                rows.append({"a": name, "b": "base", "label_a": name, "label_b": "Base",
                             "selection": selection, "metric": metric, **vars(c)})
    rows.append({**rows[0], "a": "C", "label_a": "C", "n": 1})  # one seed: left out
    for selection in scores:  # two seeds with equal differences: t-test p 0, too few to say
        c = paired(base[:2] + 41, base[:2])
        rows.append({"a": "D", "b": "base", "label_a": "D", "label_b": "Base",
                     "selection": selection, "metric": "test", **vars(c)})
    text = selection_verdicts(pd.DataFrame(rows), "records: here")
    lines = text.splitlines()
    noise = {line.split(" | ")[0][2:]: line for line in lines[2:6] if "noise score" in line}
    assert noise["A − Base"].endswith("| a higher |")
    assert noise["B − Base"].endswith("| changes: a higher → no detectable difference |")
    q = sp.false_discovery_control([sp.ttest_rel(scores["valid"][n], base).pvalue
                                    for n in ("A", "B")])
    assert f"adj. p {q[1]:.3g} |" in noise["B − Base"]
    assert "C − Base" not in text
    assert [line for line in lines if "| D − Base |" in line][0].endswith("| too few seeds |")
    assert lines[-1].startswith("2 of 5 conclusions change") and text.endswith("here.")
    one_selection = pd.DataFrame([r for r in rows if r["selection"] == "best"])
    assert selection_verdicts(one_selection, "records: here") == ""


def test_value_at_reads_dotted_keys_with_list_indices():
    from experiments.report.paired import value_at
    config = {"model": {"conv": [{"k": 400}, {"k": 300}], "hidden": {"density": 0.3}}}
    assert value_at(config, "model.conv.1.k") == 300
    assert value_at(config, "model.hidden.density") == 0.3


def test_the_seeds_block_marks_a_seed_a_network_has_not_run(mnist_dir):
    from experiments.report.write import seeds_frame
    frame = seeds_frame(report.load_report(mnist_dir)).set_index("network")
    assert frame.loc["Dense CNN-2", "seed 44"] == "-"  # only Sparse CNN-2 has a seed 44
    assert frame.loc["Dense CNN-2", "seed 42"] == "95,000"  # the best epoch: 99.3 first at 1
