"""Paired comparisons and swept-setting curves of a train experiment, from its records alone.

    paired.md, paired.csv     per comparison a - b of the experiment file's ``compare:`` and per
                              selection (best, last; valid with held-out images): the paired
                              difference of noise score and of test accuracy over the seeds that
                              both finished, with 95% t and bootstrap intervals, the sign test
                              and the Wilcoxon signed-rank test (experiments/core/stats.py)
    paired.png                the same differences with their t intervals, as a forest plot
    axes.png, axes.csv        per entry of ``axes:``: noise score and test accuracy against the
                              swept value, mean over seeds with its 95% t interval

Runs pair by seed: the same seed gives every network the same noisy test sets and, at the same
batch size, the same order of training images. Only finished runs count.
"""

import numpy as np
import pandas as pd

from experiments.core.figures import new_figure, save_figure, series_colors
from experiments.core.stats import adjusted_p, claim, paired, t_interval, t_test_p
from experiments.core.records import atomic_write
from experiments.core.tables import markdown_table
from experiments.report.tables import seed_table

METRICS = {"noise": ("noise score", 0), "test": ("test accuracy (points)", 2)}


def finished_scores(context):
    """seed_table of the finished runs only."""
    seeds = seed_table(context)
    return seeds[seeds.done]


def paired_frame(context, pairs):
    """One row per (pair, selection, metric): n, the seeds, both means and the Paired stats."""
    seeds, rows = finished_scores(context), []
    for a, b in pairs:
        left, right = (seeds[seeds.network == n].set_index("seed") for n in (a, b))
        common = sorted(set(left.index) & set(right.index))
        if not common:
            continue
        for selection in context.selections:
            for metric in METRICS:
                column = f"{metric}_{selection}"
                va, vb = left.loc[common, column].to_numpy(), right.loc[common, column].to_numpy()
                stats = paired(va, vb)
                rows.append({"a": a, "b": b, "label_a": context.labels[a],
                             "label_b": context.labels[b], "selection": selection,
                             "metric": metric, "n": stats.n,
                             "seeds": ", ".join(map(str, common)),
                             "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
                             **{k: v for k, v in vars(stats).items() if k != "n"}})
    return pd.DataFrame(rows)


def paired_markdown(frame, selection):
    """A readable table of one selection: a row per comparison, both metrics."""
    rows = []
    for (a, b), group in frame[frame.selection == selection].groupby(["a", "b"], sort=False):
        noise, test = (group[group.metric == m].iloc[0] for m in ("noise", "test"))
        rows.append({"a − b": f"{noise.label_a} − {noise.label_b}", "seeds": noise.n,
                     "noise score: a − b": _interval_cell(noise, 0),
                     "higher / lower": f"{noise.higher} / {noise.lower}",
                     "sign p": _p(noise.sign_p), "Wilcoxon p": _p(noise.wilcoxon_p),
                     "test %: a − b": _interval_cell(test, 2),
                     "test: sign p": _p(test.sign_p)})
    return pd.DataFrame(rows)


def _interval_cell(row, digits):
    mean, f = row["mean"], (lambda v: f"{v:+,.{digits}f}")
    if row["n"] < 2:
        return f(mean)
    return (f"{f(mean)} [{f(row['t_low'])}, {f(row['t_high'])}] "
            f"(bootstrap [{f(row['boot_low'])}, {f(row['boot_high'])}])")


def _p(p):
    return f"{p:.3g}"


def paired_notes(context):
    return [f"- a − b per seed on the seeds both finished; mean [95% t interval] (95% "
            f"percentile bootstrap interval, 10,000 resamples); sign test: exact binomial on "
            f"the seeds where a > b among those that differ; Wilcoxon signed-rank, exact. With "
            f"n seeds all of one sign, the sign test's p is at best 2 / 2^n (0.0625 at n = 5).",
            f"- Records: {context.experiment}'s run folders (metrics.jsonl per run)."]


def claims(frame, selection, source):
    """One sentence per comparison on noise score (experiments.core.stats.claim)."""
    lines = []
    for row in frame[(frame.selection == selection) & (frame.metric == "noise")].itertuples():
        lines.append("- " + claim(f"{row.label_a} − {row.label_b}", row, "noise score",
                                  source=source))
    return lines


def tested_together(rows):
    """(row, paired t-test p, Benjamini-Hochberg adjusted p) for each comparison of ``rows``
    (a paired_frame slice), the p adjusted over all of them."""
    rows = list(rows.itertuples())
    ps = [t_test_p(row) for row in rows]
    return zip(rows, ps, adjusted_p(ps))


def verdicts(frame, selection, source):
    """A table sorting the comparisons on noise score (2 or more seeds) by their 95% t
    interval: below 0, above 0, or across it; with each one's paired t-test p and that p
    adjusted for all of them being tested together (Benjamini-Hochberg: one interval in
    twenty excludes 0 by chance alone), and a line saying so. "" without such comparisons."""
    rows = frame[(frame.selection == selection) & (frame.metric == "noise") & (frame.n >= 2)]
    if rows.empty:
        return ""
    table = []
    for row, p, q in tested_together(rows):
        side = "below 0" if row.t_high < 0 else "above 0" if row.t_low > 0 else "across 0"
        table.append({"interval": side, "a − b": f"{row.label_a} − {row.label_b}",
                      "noise score: a − b [95% t]": f"{row.mean:+,.0f} [{row.t_low:+,.0f}, "
                                                    f"{row.t_high:+,.0f}]",
                      "seeds": row.n, "t-test p": _p(p), "adjusted p": _p(q)})
    order = {"below 0": 0, "above 0": 1, "across 0": 2}
    table.sort(key=lambda r: order[r["interval"]])
    return (markdown_table(pd.DataFrame(table)) + "\n\n"
            f"{len(rows)} comparisons tested together: the adjusted p is Benjamini-Hochberg's "
            f"over them (scipy.stats.false_discovery_control); intervals and p are those of the "
            f"paired t-test over the seeds both finished; {source}.")


CONCLUSION_MIN_SEEDS = 3  # at 2, one degree of freedom: equal differences give p = 0


def conclusion(row, q):
    """What a comparison concludes at a 5% false-discovery rate: 'a higher', 'a lower', 'no
    detectable difference' (adjusted p q of 0.05 or more), or 'too few seeds' (fewer than
    CONCLUSION_MIN_SEEDS: two seeds whose differences happen to be equal give a t-test p of
    0, however small the difference)."""
    if row.n < CONCLUSION_MIN_SEEDS:
        return "too few seeds"
    if not q < 0.05:
        return "no detectable difference"
    return "a higher" if row.mean > 0 else "a lower"


def selection_verdicts(frame, source, against="best", held_out="valid"):
    """Which conclusions change when the epoch is chosen on held-out images instead of the
    test set: per comparison and metric (2 or more seeds), a − b [95% t] with its
    Benjamini-Hochberg adjusted p under each selection (adjusted within the selection and
    metric, over the comparisons made together), each one's conclusion, and whether the
    held-out selection changes it. "" without both selections."""
    rows = frame[frame.n >= 2]
    if rows.empty or not {against, held_out} <= set(rows.selection):
        return ""
    tested = {}  # (a, b, metric) -> {selection: (row, adjusted p)}
    for _, group in rows.groupby(["selection", "metric"], sort=False):
        for row, _, q in tested_together(group):
            tested.setdefault((row.a, row.b, row.metric), {})[row.selection] = (row, q)
    table = []
    for (_, _, metric), by_selection in tested.items():
        if against not in by_selection or held_out not in by_selection:
            continue
        f = (lambda v, d=METRICS[metric][1]: f"{v:+,.{d}f}")
        cells = {s: f"{f(r.mean)} [{f(r.t_low)}, {f(r.t_high)}], adj. p {_p(q)}"
                 for s, (r, q) in by_selection.items()}
        row = by_selection[against][0]
        before, after = conclusion(*by_selection[against]), conclusion(*by_selection[held_out])
        table.append({"a − b": f"{row.label_a} − {row.label_b}", "metric": METRICS[metric][0],
                      "seeds": row.n, f"{against} epoch (test set)": cells[against],
                      f"{held_out} epoch (held-out images)": cells[held_out],
                      "conclusion": (before if before == after
                                     else f"changes: {before} → {after}")})
    changed = sum(r["conclusion"].startswith("changes") for r in table)
    return (markdown_table(pd.DataFrame(table)) + "\n\n"
            f"{changed} of {len(table)} conclusions change with the selection. A conclusion is "
            f"'a higher' or 'a lower' where the Benjamini-Hochberg adjusted p of the paired "
            f"t-test is below 0.05 (adjusted over the comparisons of one selection and metric), "
            f"else 'no detectable difference', and none is drawn from fewer than "
            f"{CONCLUSION_MIN_SEEDS} seeds; the same runs under both selections; {source}.")


def value_at(config, key):
    """The value at dotted ``key`` of a resolved config ('model.conv.0.k': list index 0)."""
    value = config
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def axis_frame(context, axes):
    """Per axis and network along it: the swept value, seeds, and the mean and 95% t interval
    of noise score and test accuracy over its finished seeds (selection: best)."""
    seeds, config = finished_scores(context), {r.network: r.config for r in context.runs}
    rows = []
    for axis, spec in axes.items():
        for name in spec.networks:
            scores = seeds[seeds.network == name]
            if name not in config or scores.empty:
                continue
            row = {"axis": axis, "key": spec.key, "network": name,
                   "label": context.labels[name], "value": value_at(config[name], spec.key),
                   "seeds": len(scores)}
            for selection in context.selections:
                for metric in METRICS:
                    values = scores[f"{metric}_{selection}"].to_numpy()
                    low, high = t_interval(values)
                    row.update({f"{metric}_{selection}_mean": float(values.mean()),
                                f"{metric}_{selection}_low": low,
                                f"{metric}_{selection}_high": high})
            rows.append(row)
    return pd.DataFrame(rows)


def axes_figure(frame, baseline, title):
    """Noise score (top) and test accuracy (bottom) against each axis's value, mean over seeds
    with 95% t intervals; the baseline network's point ringed."""
    axes_names = list(dict.fromkeys(frame.axis))
    fig = new_figure(4.0 * len(axes_names), 6.4)
    grid = fig.subplots(2, len(axes_names), squeeze=False)
    colors = series_colors(["best", "last", "valid"])
    for col, axis in enumerate(axes_names):
        part = frame[frame.axis == axis].sort_values("value")
        for row, (metric, (ylabel, _)) in enumerate(METRICS.items()):
            ax = grid[row][col]
            for selection in [s for s in ("best", "last", "valid")
                              if f"{metric}_{s}_mean" in part]:
                mean = part[f"{metric}_{selection}_mean"]
                err = [mean - part[f"{metric}_{selection}_low"],
                       part[f"{metric}_{selection}_high"] - mean]
                ax.errorbar(part.value, mean, yerr=np.nan_to_num(err), marker="o", capsize=3,
                            color=colors[selection], label=f"{selection} epoch")
            base = part[part.network == baseline]
            if not base.empty:
                ax.plot(base.value, base[f"{metric}_best_mean"], "o", ms=13, mfc="none",
                        color="black", label=f"{base.label.iloc[0]} (baseline)")
            if _log_axis(part.value):
                ax.set_xscale("log", base=2)
            ax.set_xlabel(f"{axis} ({part.key.iloc[0]})")
            ax.set_ylabel("noise score (of 110,000)" if metric == "noise" else "clean test %")
            ax.grid(alpha=0.3)
        grid[0][col].set_title(axis)
    grid[0][0].legend(fontsize="small")
    fig.suptitle(title)
    return fig


def axes_markdown(curves, frame, baseline):
    """One row per swept value: seeds, noise score and test accuracy (mean [95% t interval],
    best epoch), and the paired difference from the baseline network with its sign-test p."""
    vs = frame[(frame.selection == "best") & (frame.b == baseline)].set_index(["a", "metric"])
    rows = []
    for row in curves.itertuples():
        diff = (vs.loc[(row.network, "noise")] if (row.network, "noise") in vs.index else None)
        rows.append({"setting": row.axis, "value": f"{row.value:g}", "network": row.label,
                     "seeds": row.seeds,
                     "noise score": _mean_interval(row.noise_best_mean, row.noise_best_low,
                                                   row.noise_best_high, 0),
                     "test %": _mean_interval(row.test_best_mean, row.test_best_low,
                                              row.test_best_high, 2),
                     f"noise: − {baseline}": "baseline" if row.network == baseline else
                     ("" if diff is None else _interval_cell(diff, 0).split(" (bootstrap")[0]),
                     "sign p": "" if diff is None else _p(diff.sign_p)})
    return pd.DataFrame(rows)


def _mean_interval(mean, low, high, digits):
    if np.isnan(low):
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} [{low:,.{digits}f}, {high:,.{digits}f}]"


def _log_axis(values):
    values = [v for v in values if isinstance(v, (int, float)) and v > 0]
    return len(values) > 2 and max(values) / min(values) >= 8


def forest_figure(frame, title):
    """Each comparison's mean difference a - b with its 95% t interval, noise score (left)
    and test accuracy (right), one marker per selection; the zero line drawn."""
    selections = list(dict.fromkeys(frame.selection))
    names = list(dict.fromkeys(zip(frame.label_a, frame.label_b)))
    fig = new_figure(11.0, 1.2 + 0.38 * len(names))
    axes = fig.subplots(1, 2, sharey=True)
    colors = series_colors(["best", "last", "valid"])
    for ax, (metric, (what, _)) in zip(axes, METRICS.items()):
        for j, selection in enumerate(selections):
            part = frame[(frame.metric == metric) & (frame.selection == selection)]
            y = [names.index((a, b)) + 0.18 * (j - (len(selections) - 1) / 2)
                 for a, b in zip(part.label_a, part.label_b)]
            err = np.nan_to_num([part["mean"] - part.t_low, part.t_high - part["mean"]])
            ax.errorbar(part["mean"], y, xerr=err, fmt="o", capsize=3, color=colors[selection],
                        label=f"{selection} epoch")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"a − b: {what}")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(names)), [f"{a} − {b}" for a, b in names], fontsize="small")
    axes[0].invert_yaxis()
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    return fig


def paired_report(context, frame):
    """paired.md: one table per selection, then the notes."""
    sections = [f"**{selection} epoch**\n\n" + markdown_table(paired_markdown(frame, selection))
                for selection in context.selections]
    changes = selection_verdicts(frame, f"records: {context.experiment}'s run folders")
    if changes:
        sections.append("**which conclusions change with the held-out selection**\n\n" + changes)
    return (f"# {context.experiment}: paired comparisons, a − b over seeds\n\n"
            + "\n\n".join(sections) + "\n\n" + "\n".join(paired_notes(context)) + "\n")


def write_paired(context, suite, exp_dir):
    """paired.md/.csv and axes.png/.csv when the suite asks for them; the written paths."""
    paths = []
    frame = paired_frame(context, [] if suite is None else suite.pairs())
    if not frame.empty:
        atomic_write(exp_dir / "paired.md", paired_report(context, frame))
        paths.append(exp_dir / "paired.md")
        title = (f"{context.subject}: {context.experiment}, paired differences over seeds "
                 f"(mean, 95% t interval)")
        paths += save_figure(forest_figure(frame, title), frame, exp_dir / "paired")
    curves = axis_frame(context, {} if suite is None else suite.axes)
    if not curves.empty:
        title = (f"{context.subject}: {context.experiment}, mean over seeds with 95% t "
                 f"intervals")
        paths += save_figure(axes_figure(curves, suite.compare.against, title), curves,
                             exp_dir / "axes")
    return paths
