"""An experiment's report, rebuilt from its run records alone (the files experiments/job.py writes).

    <exp_dir>/table.md, table.csv                   per network: our scores beside the paper's
    <exp_dir>/noise_curves.png, .csv                accuracy vs noise level, mean +- std over seeds
    <exp_dir>/epochs.png, .csv                      test accuracy and noise score vs epoch
    <exp_dir>/noisy_digits.png, .csv                MNIST only, when the data is on disk (Fig. 5A)

Scores (PAPER_SPEC section 3). Test score = clean test accuracy in %; noise score = correct
classifications summed over all noise levels, the clean level included. Per seed, two epochs:
  best: the epoch with the highest clean test accuracy, the first one on ties, and that epoch's
        noise score. This is the paper's selection, and it selects on the test set.
  last: the final epoch run, with no selection (the honest variant).
Across seeds: mean and population std (ddof=0). Against the paper: delta = (ours - paper) /
paper std, computed only when the runs follow the paper's data protocol (real data, full
training and test sets, the same noise levels); otherwise the paper's numbers are shown for
reference and the reason is printed. Unfinished runs count at their latest epoch, flagged.

Scores, tables and figure data are pure functions of the loaded records (the figures are drawn
in experiments/plots.py); only the load_* and write_* functions touch files.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import yaml

from experiments.records import REPO, read_jsonl, write_table

PUBLISHED = Path(__file__).with_name("published.yaml")
SYNTHETIC = "synthetic stand-in, not the Speech Commands dataset"
DATASET_NAMES = {"mnist": "MNIST", "gsc": "Google Speech Commands"}
NOISE_AXIS = {"mnist": "noise level (% of pixels overwritten)",
              "gsc": "noise level α (% uniform noise mixed into the waveform)"}
DIGIT_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class Run:
    """One (network, seed) folder: its resolved config, epoch records and sessions."""
    network: str
    seed: int
    config: dict
    records: list
    sessions: list
    done: bool

    @property
    def epochs_planned(self):
        return self.config["train"]["epochs"]


@dataclass
class Context:
    """What the runs are, as the report needs to label and compare them."""
    experiment: str
    dataset: str  # mnist | gsc
    synthetic: bool
    subject: str  # how every title names the data
    order: list  # network names, paper order first
    labels: dict  # network -> the paper's name for it
    reference: Optional[dict]  # the published entry for this dataset (published.yaml)
    problem: Optional[str]  # why the runs cannot be compared with the paper, or None
    runs: list = field(repr=False, default_factory=list)


# ---------------------------------------------------------------- loading (the only file reads)

def load_runs(exp_dir):
    """Every run folder <exp_dir>/<network>/seed-<seed>/ that has a config.yaml."""
    runs = []
    for path in sorted(Path(exp_dir).glob("*/seed-*/config.yaml")):
        folder, prov = path.parent, path.parent / "provenance.json"
        sessions = json.loads(prov.read_text())["sessions"] if prov.is_file() else []
        runs.append(Run(network=folder.parent.name, seed=int(folder.name.split("-", 1)[1]),
                        config=yaml.safe_load(path.read_text()),
                        records=read_jsonl(folder / "metrics.jsonl"), sessions=sessions,
                        done=(folder / "done").is_file()))
    return runs


def load_published(path=PUBLISHED):
    return yaml.safe_load(Path(path).read_text())


def load_report(exp_dir, published=None):
    """The Context of an experiment folder (its runs included): what the report is made of."""
    return report_context(load_runs(exp_dir), Path(exp_dir).name, published or load_published())


# ---------------------------------------------------------------- context and labels

def report_context(runs, experiment, published):
    """Dataset, labels, network order and comparability of a set of runs."""
    if not runs:
        raise ValueError(f"{experiment}: no run folders (<network>/seed-<seed>/config.yaml)")
    datasets = {r.config["data"]["name"] for r in runs}
    if len(datasets) != 1:
        raise ValueError(f"{experiment}: expected runs of one dataset, got {sorted(datasets)}")
    dataset = datasets.pop()
    synthetic = any(r.config["data"].get("source") == "synthetic" for r in runs)
    reference = published.get(dataset)
    subject = f"{DATASET_NAMES[dataset]} ({SYNTHETIC})" if synthetic else DATASET_NAMES[dataset]
    known = list(reference["networks"]) if reference else []
    present = {r.network for r in runs}
    order = [n for n in known if n in present] + sorted(present - set(known))
    labels = {r.network: r.config.get("label") or r.network for r in runs}
    return Context(experiment, dataset, synthetic, subject, order, labels, reference,
                   comparison_problem(runs, reference, synthetic), runs)


def comparison_problem(runs, reference, synthetic):
    """Why these runs' scores cannot be set against the published ones (None if they can)."""
    if reference is None:
        return "no published numbers for this dataset"
    if synthetic:
        return f"{SYNTHETIC}; the paper's numbers are for the real dataset"
    for run in runs:
        data = run.config["data"]
        limits = {k: data.get(k) for k in ("train_limit", "test_limit") if data.get(k)}
        if limits:
            shown = ", ".join(f"data.{k}={v}" for k, v in limits.items())
            return f"trained or tested on a subset ({shown}): a smoke run"
    maxima = {score_max(r) for r in runs if r.records}
    if maxima - {reference["noise_score_max"]}:
        return (f"noise score out of {', '.join(f'{m:,}' for m in sorted(maxima))}, the "
                f"paper's is out of {reference['noise_score_max']:,}")
    return None


def score_max(run):
    """The largest possible noise score of a run: test examples x noise levels."""
    record = run.records[0]
    return record["num_test"] * len(record["noise_correct"])


def seed_list(seeds):
    """'42-51' for a contiguous run of seeds, else '1, 3, 7'."""
    seeds = sorted(set(seeds))
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def provenance_summary(runs):
    """{device, git_commit, torch}: the distinct values over every session of every run."""
    sessions = [s for r in runs for s in r.sessions]
    return {key: ", ".join(sorted({str(s.get(key, "unknown")) for s in sessions})) or "unknown"
            for key in ("device", "git_commit", "torch")}


# ---------------------------------------------------------------- scores (pure)

def best_epoch(records):
    """The record with the highest clean test accuracy; the earliest one on ties."""
    return max(records, key=lambda r: r["test_accuracy"])  # max keeps the first maximum


def last_epoch(records):
    return records[-1]


SELECTIONS = {"best": best_epoch, "last": last_epoch}


def mean_std(values):
    """(mean, population std with ddof=0); (nan, nan) for no values."""
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=0))


def seed_table(context):
    """One row per run: progress, and the test and noise scores of its best and last epochs."""
    rows = []
    for run in _ordered(context):
        row = {"network": run.network, "seed": run.seed, "done": run.done,
               "epochs_done": len(run.records), "epochs_planned": run.epochs_planned}
        for name, select in SELECTIONS.items():
            record = select(run.records) if run.records else {}
            row[f"{name}_epoch"] = record.get("epoch")
            row[f"test_{name}"] = record.get("test_accuracy", np.nan)
            row[f"noise_{name}"] = record.get("noise_score", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def results_table(context):
    """One row per network (paper order): progress, scores, the paper's, and the deltas."""
    seeds = seed_table(context)
    return pd.DataFrame([network_row(name, seeds[seeds.network == name], context)
                         for name in context.order])


def network_row(name, seeds, context):
    """The table row of one network from its rows of ``seed_table``."""
    started = seeds[seeds.epochs_done > 0]
    row = {"network": name, "label": context.labels[name], "seeds": seed_list(seeds.seed),
           "runs": len(seeds), "runs_done": int(seeds.done.sum()),
           "epochs_planned": int(seeds.epochs_planned.max()),
           "epochs_done_min": int(seeds.epochs_done.min()),
           "epochs_done_max": int(seeds.epochs_done.max()), "status": run_status(seeds)}
    for selection in SELECTIONS:
        for score in ("test", "noise"):
            mean, std = mean_std(started[f"{score}_{selection}"])
            row[f"{score}_{selection}_mean"], row[f"{score}_{selection}_std"] = mean, std
    row["best_epochs"] = ", ".join(str(int(e)) for e in started.best_epoch)
    row.update(paper_columns(name, row, context))
    row["data"] = context.subject
    return row


def run_status(seeds):
    if not seeds.done.all():
        return "not started" if (seeds.epochs_done == 0).all() else "partial"
    return "finished"


def paper_columns(name, row, context):
    """The published mean/std of ``name`` and, when comparable, (ours - paper) / paper std."""
    entry = (context.reference or {}).get("networks", {}).get(name)
    cols = {"paper_test_mean": np.nan, "paper_test_std": np.nan,
            "paper_noise_mean": np.nan, "paper_noise_std": np.nan}
    if entry:
        for score in ("test", "noise"):
            cols[f"paper_{score}_mean"] = entry[f"{score}_score"]["mean"]
            cols[f"paper_{score}_std"] = entry[f"{score}_score"]["std"]
    for selection in SELECTIONS:
        for score in ("test", "noise"):
            delta = np.nan
            if entry and context.problem is None:
                delta = ((row[f"{score}_{selection}_mean"] - cols[f"paper_{score}_mean"])
                         / cols[f"paper_{score}_std"])
            cols[f"{score}_{selection}_delta"] = delta
    cols["compared_with_paper"] = bool(entry) and context.problem is None
    return cols


# ---------------------------------------------------------------- the table as Markdown

def table_title(context):
    """Data, experiment, seeds, epochs and device, and whether the paper is compared."""
    runs = context.runs
    epochs = _span([r.epochs_planned for r in runs])
    table = context.reference["table"] if context.reference else "the paper"
    versus = (f"compared with {table} of Ahmad & Scheinkman (2019)" if context.problem is None
              else f"{table} of the paper for reference only, not compared")
    return (f"{context.subject}: {context.experiment}, seeds {seed_list(r.seed for r in runs)}, "
            f"epochs {epochs}, on {provenance_summary(runs)['device']}; {versus}")


def table_notes(table, context):
    """The lines under the table: what was run, on what, and how the scores are made."""
    runs = context.runs
    prov = provenance_summary(runs)
    done = sum(r.done for r in runs)
    maxima = sorted({score_max(r) for r in runs if r.records})
    lines = [f"- Runs: {len(runs)} (networks: {len(context.order)}; seeds: "
             f"{seed_list(r.seed for r in runs)}), {done} finished; epochs planned per run: "
             f"{_span(table.epochs_planned)}.",
             f"- Data: {context.subject}; noise score out of "
             f"{', '.join(f'{m:,}' for m in maxima) or '?'} (test examples x noise levels).",
             f"- Hardware: {prov['device']}; git commit {prov['git_commit']}; "
             f"torch {prov['torch']}.",
             "- Best epoch: highest clean test accuracy, first maximum (the paper's selection,"
             " made on the test set); last epoch: the final epoch run (no selection). "
             "Scores: mean ± population std (ddof=0) over seeds."]
    if (table.status != "finished").any():
        lines.append("- PARTIAL rows include unfinished runs at their latest epoch.")
    lines.append(comparison_note(context))
    return lines


def comparison_note(context):
    if context.reference is None:
        return "- No published numbers for this dataset."
    source = f"{context.reference['table']} ({context.reference['seeds']} seeds), " \
             f"from experiments/published.yaml"
    if context.problem is None:
        return f"- Paper: {source}. (+x σ) = (ours − paper mean) / paper std."
    return f"- Paper: {source}, shown for reference only, not compared: {context.problem}."


def markdown_frame(table, context):
    """The table with 'mean ± std (+delta σ)' cells, for reading."""
    paper = "paper" if context.problem is None else "paper, reference only"
    out = pd.DataFrame({"network": table.label, "seeds": table.seeds,
                        "runs done": [_runs_cell(r) for r in table.itertuples()],
                        "epochs done": [_epochs_cell(r) for r in table.itertuples()]})
    for selection in SELECTIONS:
        out[f"test % ({selection} epoch)"] = _score_cells(table, "test", selection, 2)
        out[f"noise score ({selection} epoch)"] = _score_cells(table, "noise", selection, 0)
    out[f"test % ({paper})"] = [_mean_std(m, s, 2) for m, s in
                                zip(table.paper_test_mean, table.paper_test_std)]
    out[f"noise score ({paper})"] = [_mean_std(m, s, 0) for m, s in
                                     zip(table.paper_noise_mean, table.paper_noise_std)]
    out["best epoch per seed"] = table.best_epochs
    return out


def _score_cells(table, score, selection, digits):
    cells = []
    for mean, std, delta in zip(table[f"{score}_{selection}_mean"],
                                table[f"{score}_{selection}_std"],
                                table[f"{score}_{selection}_delta"]):
        delta_text = "" if np.isnan(delta) else f" ({delta:+.2f} σ)"
        cells.append(_mean_std(mean, std, digits) + delta_text)
    return cells


def _mean_std(mean, std, digits):
    return "" if np.isnan(mean) else f"{mean:,.{digits}f} ± {std:,.{digits}f}"


def _runs_cell(row):
    flag = "" if row.status == "finished" else f" ({row.status.upper()})"
    return f"{row.runs_done} of {row.runs}{flag}"


def _epochs_cell(row):
    done = _span([row.epochs_done_min, row.epochs_done_max])
    return f"{done} of {row.epochs_planned}"


def _span(values):
    low, high = int(min(values)), int(max(values))
    return str(low) if low == high else f"{low}-{high}"


def _ordered(context):
    """The runs in paper order of networks, then by seed."""
    rank = {name: i for i, name in enumerate(context.order)}
    return sorted(context.runs, key=lambda r: (rank[r.network], r.seed))


# ---------------------------------------------------------------- figure data (pure)

def noise_curve_frame(context):
    """Accuracy per noise level: mean, std (ddof=0) and count over seeds, per selection.

    The paper's Figure 5B points (seed 42, last epoch) sit beside the 'last' rows.
    """
    rows = [{"network": run.network, "label": context.labels[run.network],
             "selection": selection, "level": float(level), "accuracy": accuracy}
            for run in _ordered(context) if run.records
            for selection, select in SELECTIONS.items()
            for level, accuracy in select(run.records)["noise_accuracy"].items()]
    frame = (pd.DataFrame(rows)
             .groupby(["network", "label", "selection", "level"], sort=False)["accuracy"]
             .agg(mean="mean", std=lambda a: a.std(ddof=0), seeds="count").reset_index())
    frame["paper_fig5b"] = [figure5b_point(context, r.network, r.level)
                            if r.selection == "last" else np.nan for r in frame.itertuples()]
    frame["data"] = context.subject
    return frame


def figure5b_point(context, network, level):
    """The paper's Figure 5B accuracy of ``network`` at ``level``, or nan."""
    fig = (context.reference or {}).get("figure_5b")
    if context.synthetic or not fig or network not in fig["networks"]:
        return np.nan
    for point_level, accuracy in zip(fig["levels"], fig["networks"][network]):
        if abs(point_level - level) < 1e-9:
            return float(accuracy)
    return np.nan


def epoch_frame(context):
    """Test accuracy and noise score per (network, seed, epoch), plus 'mean' rows per epoch."""
    rows = [{"network": run.network, "label": context.labels[run.network], "seed": run.seed,
             "epoch": r["epoch"], "test_accuracy": r["test_accuracy"],
             "noise_score": r["noise_score"], "done": run.done}
            for run in _ordered(context) for r in run.records]
    seeds = pd.DataFrame(rows)
    means = (seeds.groupby(["network", "label", "epoch"], sort=False)
             [["test_accuracy", "noise_score"]].mean().reset_index())
    means["seed"] = "mean"
    frame = pd.concat([seeds, means], ignore_index=True)
    frame["data"] = context.subject
    return frame


def noisy_digit_grid(test_images, test_labels, levels=DIGIT_LEVELS, seed=0):
    """(images (10, L, 28, 28) in [0, 1], frame): the first test image of each digit 0..9 at
    every noise level, with the paper's pixel noise (data.noise.add_pixel_noise)."""
    import torch
    from data.noise import add_pixel_noise, noisy_pixel_count
    index = [int((test_labels == d).nonzero()[0]) for d in range(10)]
    clean = test_images[index].float().div(255.0).unsqueeze(1)  # (10, 1, 28, 28)
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack([add_pixel_noise(clean, level, generator)[:, 0] for level in levels],
                       dim=1)  # (10, L, 28, 28)
    frame = pd.DataFrame([{"digit": d, "test_index": i, "level": level,
                           "noisy_pixels": noisy_pixel_count(784, level), "seed": seed}
                          for d, i in enumerate(index) for level in levels])
    return grid.numpy(), frame


# ---------------------------------------------------------------- figures and files

def build_figures(context):
    """{file stem: (matplotlib Figure, the DataFrame behind it)} for the experiment."""
    from experiments import plots
    curves, epochs = noise_curve_frame(context), epoch_frame(context)
    return {
        "noise_curves": (plots.noise_curves_figure(
            curves, f"{context.subject}: accuracy vs noise ({context.experiment})",
            NOISE_AXIS[context.dataset]), curves),
        "epochs": (plots.epochs_figure(
            epochs, f"{context.subject}: test accuracy and noise score per epoch "
                    f"({context.experiment})"), epochs),
    }


def mnist_test_images(root):
    """(test images uint8 (N, 28, 28), labels) when MNIST is on disk under ``root``, else
    None. Never downloads."""
    if not (Path(root) / "MNIST" / "raw").is_dir():  # where data.mnist keeps the files;
        return None  # checked first, so a report without the data never imports torch
    from data import DataError
    from data.mnist import load_mnist
    try:
        _, _, images, labels = load_mnist(root, download=False)
    except DataError:
        return None
    return images, labels


def noisy_digits(root="datasets"):
    """(Figure 5A, the frame behind it): rows = digits, columns = noise levels; None when the
    MNIST files are not on disk under ``root`` (never downloads)."""
    from experiments import plots
    data = mnist_test_images(root)
    if data is None:
        return None
    grid, frame = noisy_digit_grid(*data)
    fig = plots.noisy_digits_figure(grid, DIGIT_LEVELS,
                                    "MNIST test digits with the paper's pixel noise (Fig. 5A)")
    return fig, frame


def write_noisy_digits(exp_dir, root="datasets"):
    """Write noisy_digits.png / .csv; return the paths, or [] when MNIST is not on disk."""
    from experiments import plots
    figure = noisy_digits(root)
    if figure is None:
        print(f"report: MNIST not found under {root}; skipping the noisy-digit figure")
        return []
    return plots.save_figure(*figure, Path(exp_dir) / "noisy_digits")


def data_root(runs):
    """The runs' dataset folder: as written if it exists from here, else under the repo."""
    root = Path(runs[0].config["data"].get("root", "datasets"))
    return root if root.is_absolute() or root.exists() else REPO / root


def write_report(exp_dir):
    """Write table.md/.csv and the figures of ``exp_dir``; return the paths written."""
    from experiments import plots
    exp_dir = Path(exp_dir)
    runs = load_runs(exp_dir)
    if not any(r.records for r in runs):
        print(f"report: no finished epoch under {exp_dir} yet; nothing to report")
        return []
    context = report_context(runs, exp_dir.name, load_published())
    table = results_table(context)
    paths = list(write_table(table, exp_dir / "table", title=table_title(context),
                             notes=table_notes(table, context),
                             markdown=markdown_frame(table, context)))
    for stem, (fig, frame) in build_figures(context).items():
        paths += plots.save_figure(fig, frame, exp_dir / stem)
    if context.dataset == "mnist":
        paths += write_noisy_digits(exp_dir, data_root(context.runs))
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths
