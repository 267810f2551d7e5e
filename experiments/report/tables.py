"""An experiment's report, rebuilt from its run records alone (experiments/core/runs.py).

    <exp_dir>/table.md, table.csv                   per network: our scores beside the paper's
    <exp_dir>/noise_curves.png, .csv                accuracy vs noise level, mean +- std over seeds
    <exp_dir>/epochs.png, .csv                      test accuracy and noise score vs epoch
    <exp_dir>/noisy_examples.png, .csv              the dataset's noisy examples (MNIST: Fig. 5A)
    <exp_dir>/comparison.md, .csv                   this run beside the shipped reference records
                                                    and the paper (when reference records exist)

Scores (docs/paper_spec.md section 3). Test score = clean test accuracy in %; noise score = correct
classifications summed over all noise levels, the clean level included. Per seed, two epochs:
  best: the epoch with the highest clean test accuracy, the first one on ties, and that epoch's
        noise score. This is the paper's selection, and it selects on the test set.
  last: the final epoch run, with no selection (the honest variant).
Across seeds: mean and population std (ddof=0). Against the paper: delta = (ours - paper) /
paper std, computed only when the runs follow the paper's data protocol (real data, full
training and test sets, the same noise levels); otherwise the paper's numbers are shown for
reference and the reason is printed. Unfinished runs count at their latest epoch, flagged.

Scores, tables and figure data are pure functions of the loaded records (the figures are drawn
in experiments/report/figures.py); only the load_* functions touch files. Nothing here loads a
dataset or a model: what the data is comes from each run's dataset.json.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from experiments.core.published import published
from experiments.core.runs import load_runs
from experiments.core.selection import selections


@dataclass
class Context:
    """What the runs are, as the report needs to label and compare them."""
    experiment: str
    dataset: str  # a key of data.DATASETS, as the runs' dataset.json names it
    synthetic: bool
    subject: str  # how every title names the data
    noise_axis: str  # the x label of accuracy-vs-noise plots
    order: list  # network names, paper order first
    labels: dict  # network -> the paper's name for it
    reference: Optional[dict]  # the published entry for this dataset (published.yaml)
    problem: Optional[str]  # why the runs cannot be compared with the paper, or None
    runs: list = field(repr=False, default_factory=list)
    selections: dict = field(default_factory=dict)  # name -> the epoch it picks (records)


# ---------------------------------------------------------------- loading (the only file reads)

def load_published():
    return published()


def load_report(exp_dir, published=None):
    """The Context of an experiment folder (its runs included): what the report is made of."""
    return report_context(load_runs(exp_dir), Path(exp_dir).name, published or load_published())


# ---------------------------------------------------------------- context and labels

def report_context(runs, experiment, published):
    """Dataset, labels, network order and comparability of a set of runs."""
    if not runs:
        raise ValueError(f"{experiment}: no run folders (<network>/seed-<seed>/config.yaml)")
    started = [r for r in runs if r.dataset]  # a queued job's folder holds its config alone
    datasets = {(r.dataset.get("name"), r.dataset.get("title")) for r in started}
    if len(datasets) != 1:
        raise ValueError(f"{experiment}: expected runs of one dataset, got {sorted(map(str, datasets))}")
    info = started[0].dataset
    dataset, synthetic, subject = info["name"], info["synthetic"], info["title"]
    reference = published.get(dataset)
    known = list(reference["networks"]) if reference else []
    present = {r.network for r in runs}
    order = [n for n in known if n in present] + sorted(present - set(known))
    labels = {r.network: r.config.get("label") or r.network for r in runs}
    return Context(experiment, dataset, synthetic, subject, info["noise_axis"], order, labels,
                   reference, comparison_problem(runs, reference, subject, synthetic), runs,
                   selections([r.records for r in runs if r.records]))


def comparison_problem(runs, reference, subject, synthetic):
    """Why these runs' scores cannot be set against the published ones (None if they can)."""
    if reference is None:
        return "no published numbers for this dataset"
    if synthetic:
        return f"{subject}; the paper's numbers are for the real dataset"
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


def epochs_planned(run):
    return run.config["train"]["epochs"]


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
               "epochs_done": len(run.records), "epochs_planned": epochs_planned(run)}
        for name, select in context.selections.items():
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
    for selection in context.selections:
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
    for selection in context.selections:
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
    epochs = _span([epochs_planned(r) for r in runs])
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
    if "valid" in context.selections:
        sizes = sorted({r.records[0]["num_validation"] for r in runs if r.records})
        lines.append(f"- Valid epoch: highest accuracy on {', '.join(f'{n:,}' for n in sizes)} "
                     f"training images held out from training (data.validation), first "
                     f"maximum: a selection that never sees the test set.")
    if (table.status != "finished").any():
        lines.append("- PARTIAL rows include unfinished runs at their latest epoch.")
    lines.append(comparison_note(context))
    return lines


def comparison_note(context):
    if context.reference is None:
        return "- No published numbers for this dataset."
    source = f"{context.reference['table']} ({context.reference['seeds']} seeds), " \
             f"from experiments/core/published.yaml"
    if context.problem is None:
        return f"- Paper: {source}. (+x σ) = (ours − paper mean) / paper std."
    return f"- Paper: {source}, shown for reference only, not compared: {context.problem}."


def markdown_frame(table, context):
    """The table with 'mean ± std (+delta σ)' cells, for reading."""
    paper = "paper" if context.problem is None else "paper, reference only"
    out = pd.DataFrame({"network": table.label, "seeds": table.seeds,
                        "runs done": [_runs_cell(r) for r in table.itertuples()],
                        "epochs done": [_epochs_cell(r) for r in table.itertuples()]})
    for selection in context.selections:
        out[f"test % ({selection} epoch)"] = _score_cells(table, "test", selection, 2)
        out[f"noise score ({selection} epoch)"] = _score_cells(table, "noise", selection, 0)
    out[f"test % ({paper})"] = [mean_std_cell(m, s, 2) for m, s in
                                zip(table.paper_test_mean, table.paper_test_std)]
    out[f"noise score ({paper})"] = [mean_std_cell(m, s, 0) for m, s in
                                     zip(table.paper_noise_mean, table.paper_noise_std)]
    out["best epoch per seed"] = table.best_epochs
    return out


def _score_cells(table, score, selection, digits):
    cells = []
    for mean, std, delta in zip(table[f"{score}_{selection}_mean"],
                                table[f"{score}_{selection}_std"],
                                table[f"{score}_{selection}_delta"]):
        delta_text = "" if np.isnan(delta) else f" ({delta:+.2f} σ)"
        cells.append(mean_std_cell(mean, std, digits) + delta_text)
    return cells


def mean_std_cell(mean, std, digits):
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
            for selection, select in context.selections.items()
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
