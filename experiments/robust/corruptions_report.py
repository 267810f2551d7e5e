"""The corruptions report, from the jobs' records alone (metrics.jsonl).

    mnist_c.md, .csv            MNIST-C as published, per network: the clean error and each
                                corruption's error (%), mCE and relative mCE (below)
    corruptions.md, .csv        the extra corruptions, per network: clean accuracy, the mean
                                accuracy over each one's severities, the mean over all, and
                                the relative mCE over them (the CSV: per severity, with 95%
                                Clopper-Pearson intervals over the images)
    corruption_curves.png, .csv the extras: accuracy against severity, a panel per corruption
    paired.md                   with several seeds: each compared pair's relative mCE, paired
                                over seeds (experiments/core/stats.py)
    mnist_c_mosaic.png,         written by the job side before the jobs (corruptions.py): the
      extra_mosaic.png          first test images under every corruption and severity

The errors are Hendrycks & Dietterich's (2019), with the baseline network b (``compare:
against`` of the experiment file, else Dense CNN-2), E the error over the test images:

    CE_c          = sum_s E_{s,c} / sum_s E^b_{s,c}                       (mCE: mean over c)
    relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^b_{s,c} - E^b_clean)
                                                               (relative mCE: mean over c)

so the relative mCE counts only what a corruption adds to each network's own clean error.
Severities the records flag as unreadable (a human no longer reads the digit: judged from the
mosaics, data/corruptions.py) are marked and left out of the means. With several seeds the
images of all seeds are pooled, except in paired.md. Imports no model and no dataset.
"""

import math
from pathlib import Path

import pandas as pd

from experiments.core.figures import new_figure, save_figure, series_colors
from experiments.core.intervals import clopper_pearson
from experiments.core.records import atomic_write
from experiments.core.runs import load_runs
from experiments.core.stats import claim, paired
from experiments.core.tables import markdown_table, write_table

CLEAN = "clean"
BASELINE = "dense_cnn2"  # when the experiment file names no ``compare: against``


def suite_of(record):
    """clean, mnist_c or extra (records from before MNIST-C name no suite: extra)."""
    return CLEAN if record["corruption"] == CLEAN else record.get("suite", "extra")


def _rows(run, r, tag):
    severities = r["severity"]
    amounts = r.get("amounts", [None] * len(severities))
    unreadable = r.get("unreadable", [False] * len(severities))
    suite = suite_of(r)
    return [{**tag, "corruption": r["corruption"], "suite": suite,
             "title": r.get("title", CLEAN), "parameter": r.get("parameter", r.get("setting", "")),
             "severity": s, "amount": a, "unreadable": bool(u), "correct": c,
             "images": r["images"]}
            for s, a, u, c in zip(severities, amounts, unreadable, r["correct"])]


def load_seed_frame(exp_dir):
    """One row per (network, seed, corruption, severity): correct, images, and what the
    corruption is; severity 0 is the clean run."""
    rows = []
    for run in load_runs(exp_dir):
        clean = [r for r in run.records if r["corruption"] == CLEAN]
        if not clean:
            continue
        tag = {"network": run.network, "label": clean[0]["label"], "seed": run.seed}
        rows += [row for r in run.records for row in _rows(run, r, tag)]
    return pd.DataFrame(rows) if rows else None


def pooled(seeds):
    """Per (network, corruption, severity), the seeds pooled: correct, images, accuracy and
    its interval."""
    keys = ["network", "label", "corruption", "suite", "title", "parameter", "severity"]
    frame = seeds.groupby(keys, sort=False, dropna=False).agg(
        amount=("amount", "first"), unreadable=("unreadable", "first"),
        correct=("correct", "sum"), images=("images", "sum"),
        seeds=("seed", "nunique")).reset_index()
    lo, hi = clopper_pearson(frame.correct, frame.images)
    return frame.assign(accuracy=frame.correct / frame.images, lo=lo, hi=hi)


def load_frame(exp_dir):
    seeds = load_seed_frame(exp_dir)
    return None if seeds is None else pooled(seeds)


def baseline_of(suite):
    return suite.compare.against if suite is not None and suite.compare.against else BASELINE


def corruption_errors(frame, suite_name, baseline):
    """Per (network, corruption): CE and relative CE against ``baseline`` (fractions), over
    the readable severities of ``suite_name``'s corruptions; None without the baseline's."""
    if baseline not in set(frame.network):
        return None
    error = frame.assign(error=1 - frame.accuracy)
    clean = error[error.corruption == CLEAN].set_index("network").error
    part = error[(error.suite == suite_name) & ~error.unreadable]
    if baseline not in set(part.network):
        return None
    part = part.assign(added=part.error - part.network.map(clean))
    sums = part.groupby(["network", "corruption"], sort=False)[["error", "added"]].sum()
    base = sums.loc[baseline]
    ce = sums.error / sums.index.get_level_values("corruption").map(base.error).to_numpy()
    rel = sums.added / sums.index.get_level_values("corruption").map(base.added).to_numpy()
    return pd.DataFrame({"ce": ce, "relative_ce": rel}).reset_index()


def mnist_c_markdown(frame, baseline):
    """A row per network: clean error, each MNIST-C corruption's error, mCE, relative mCE
    (the errors in %, the mCEs in % of the baseline's)."""
    part = frame[frame.suite == "mnist_c"]
    if part.empty:
        return None
    table = 100 * (1 - part.pivot_table(index="label", columns="title", values="accuracy",
                                        sort=False))
    table = table[list(dict.fromkeys(part.title))]
    clean = frame[frame.corruption == CLEAN].set_index("label").accuracy
    table.insert(0, "clean", 100 * (1 - clean.reindex(table.index)))
    table = table.map(lambda v: f"{v:.1f}")
    errors = corruption_errors(frame, "mnist_c", baseline)
    if errors is not None:
        labels = frame.drop_duplicates("network").set_index("network").label
        means = errors.groupby("network", sort=False)[["ce", "relative_ce"]].mean()
        means.index = means.index.map(labels)
        table["mCE"] = (100 * means.ce.reindex(table.index)).map(lambda v: f"{v:.0f}")
        table["relative mCE"] = (100 * means.relative_ce.reindex(table.index)).map(
            lambda v: f"{v:.0f}")
    return table.reset_index().rename(columns={"label": "network"})


def summary_markdown(frame, baseline=BASELINE):
    """The extras, a row per network: clean and each corruption's mean accuracy over its
    readable severities (%), their mean, and the relative mCE against ``baseline``."""
    corrupt = frame[(frame.suite == "extra") & ~frame.unreadable]
    if corrupt.empty:
        return None
    means = corrupt.pivot_table(index="label", columns="title", values="accuracy",
                                aggfunc="mean", sort=False)
    table = 100 * means[list(dict.fromkeys(corrupt.title))]
    table.insert(0, "clean", 100 * frame[frame.corruption == CLEAN].set_index("label").accuracy)
    table["mean over corruptions"] = table.iloc[:, 1:].mean(axis=1)
    table = table.map(lambda v: f"{v:.1f}")
    errors = corruption_errors(frame, "extra", baseline)
    if errors is not None:
        labels = frame.drop_duplicates("network").set_index("network").label
        rel = errors.groupby("network", sort=False).relative_ce.mean()
        rel.index = rel.index.map(labels)
        table["relative mCE"] = (100 * rel.reindex(table.index)).map(lambda v: f"{v:.0f}")
    return table.reset_index().rename(columns={"label": "network"})


def unreadable_note(frame):
    flagged = frame[frame.unreadable].drop_duplicates(["corruption", "severity"])
    if flagged.empty:
        return "No severity is flagged unreadable."
    return ("Left out of the means as unreadable (a human no longer reads the digit, judged "
            "from the mosaics): " + ", ".join(f"{r.title} severity {r.severity}"
                                               for r in flagged.itertuples()) + ".")


def curves_figure(frame):
    """A panel per extra corruption: accuracy (%) against severity, 0 being the clean images."""
    extra = frame[frame.suite == "extra"]
    corruptions = list(dict.fromkeys(extra.corruption))
    cols = 4
    fig = new_figure(4 * cols, 3.4 * math.ceil(len(corruptions) / cols))
    axes = fig.subplots(math.ceil(len(corruptions) / cols), cols, squeeze=False).flatten()
    colors = series_colors(dict.fromkeys(frame.network))
    clean = frame[frame.corruption == CLEAN].set_index("network")
    curves = []
    for ax, name in zip(axes, corruptions):
        part = extra[extra.corruption == name]
        for network, g in part.groupby("network", sort=False):
            curve = pd.concat([clean.loc[[network]].reset_index().assign(corruption=name), g])
            ax.plot(curve.severity, 100 * curve.accuracy, marker="o", markersize=3,
                    color=colors[network], label=g.label.iloc[0])
            curves.append(curve)
        first = part.drop_duplicates("severity").sort_values("severity")
        ax.set_xticks([0, *first.severity],
                      ["clean", *(f"{s}\n{a:g}" + ("*" if u else "") for s, a, u in
                                  zip(first.severity, first.amount, first.unreadable))])
        ax.set(title=first.title.iloc[0], xlabel=f"severity ({first.parameter.iloc[0]})",
               ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(corruptions):]:
        ax.axis("off")
    spare = axes[-1] if len(corruptions) < len(axes) else axes[0]  # a free panel if there is one
    spare.legend(*axes[0].get_legend_handles_labels(), fontsize="small", loc="center")
    fig.suptitle("MNIST test accuracy under the extra corruptions and the paper's pixel noise "
                 "(*: unreadable)")
    return fig, pd.concat(curves)[["corruption", "network", "label", "severity", "amount",
                                   "unreadable", "correct", "images", "accuracy", "lo", "hi"]]


def seed_relative_mce(seeds, suite_name, baseline):
    """Per (network, seed): the relative mCE of ``suite_name`` against the baseline of the
    same seed."""
    rows = []
    for seed, g in seeds.groupby("seed"):
        errors = corruption_errors(pooled(g), suite_name, baseline)
        if errors is not None and not errors.empty:
            means = errors.groupby("network").relative_ce.mean()
            rows += [{"network": n, "seed": seed, "relative_mce": 100 * v}
                     for n, v in means.items()]
    return pd.DataFrame(rows)


def paired_claims(seeds, pairs, baseline):
    """claim() sentences: each pair's relative mCE (MNIST-C; the extras), paired over the seeds
    that both ran (at least two)."""
    labels = seeds.drop_duplicates("network").set_index("network").label
    lines = []
    for suite_name, title in (("mnist_c", "MNIST-C relative mCE"),
                              ("extra", "extra corruptions' relative mCE")):
        per_seed = seed_relative_mce(seeds, suite_name, baseline)
        if per_seed.empty:
            continue
        table = per_seed.pivot(index="seed", columns="network", values="relative_mce")
        for a, b in pairs:
            if a not in table or b not in table:
                continue
            both = table[[a, b]].dropna()
            if len(both) >= 2:
                lines.append(claim(f"{labels[a]} − {labels[b]}", paired(both[a], both[b]),
                                   f"{title} (% of {labels[baseline]}'s), seeds "
                                   f"{', '.join(map(str, both.index))}", digits=1))
    return lines


def per_corruption_paired(seeds, pairs, suite_name="mnist_c"):
    """Markdown: per pair and corruption of ``suite_name`` (its readable severities), the error
    of each network (%, mean over seeds) and their difference paired over the seeds that both
    ran (at least two): mean, 95% t interval, on how many seeds the first is lower, Wilcoxon
    p; None when no pair has two seeds."""
    part = seeds[((seeds.suite == suite_name) & ~seeds.unreadable)]
    if part.empty:
        return None
    error = (part.assign(error=100 * (1 - part.correct / part.images))
             .groupby(["network", "seed", "corruption", "title"], sort=False).error.mean()
             .reset_index())
    labels = seeds.drop_duplicates("network").set_index("network").label
    rows = []
    for a, b in pairs:
        for (corruption, title), g in error.groupby(["corruption", "title"], sort=False):
            table = g.pivot(index="seed", columns="network", values="error")
            if a not in table or b not in table:
                continue
            both = table[[a, b]].dropna()
            if len(both) < 2:
                continue
            c = paired(both[a], both[b])
            rows.append(f"| {title} | {labels[a]} − {labels[b]} | {both[a].mean():.1f} | "
                        f"{both[b].mean():.1f} | {c.mean:+.1f} | {c.t_low:+.1f} to "
                        f"{c.t_high:+.1f} | {c.lower} of {c.n} | {c.wilcoxon_p:.3g} |")
    if not rows:
        return None
    return ("| corruption | pair | error A (%) | error B (%) | A − B (points) | 95% interval "
            "(t) | A lower on | Wilcoxon p |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def write_report(exp_dir, suite=None):
    """Write the tables and figure of a corruptions experiment; return the paths."""
    exp_dir = Path(exp_dir)
    seeds = load_seed_frame(exp_dir)
    if seeds is None:
        print(f"report: no evaluated network under {exp_dir} yet")
        return []
    frame, baseline = pooled(seeds), baseline_of(suite)
    images = int(frame.images.iloc[0] / frame.seeds.iloc[0])
    paths = []
    mnist_c = mnist_c_markdown(frame, baseline)
    if mnist_c is not None:
        paths += write_table(frame[frame.suite.isin(["mnist_c", CLEAN])], exp_dir / "mnist_c",
                             markdown=mnist_c, title=f"MNIST-C error (%) ({exp_dir.name})",
                             notes=[f"Error (%) on {images:,} test images per seed; mCE = mean "
                                    f"of E_c / E_c({baseline}), relative mCE = mean of "
                                    f"(E_c - E_clean) / (E_c - E_clean)({baseline}), in %."])
    extras = summary_markdown(frame, baseline)
    if extras is not None:
        notes = [f"Accuracy (%) on {images:,} test images per seed, the mean over each "
                 f"corruption's readable severities; per severity, with 95% Clopper-Pearson "
                 f"intervals, in the CSV. Relative mCE in % of {baseline}'s.",
                 unreadable_note(frame)]
        paths += write_table(frame[frame.suite.isin(["extra", CLEAN])], exp_dir / "corruptions",
                             notes=notes, markdown=extras,
                             title=f"Accuracy under the extra corruptions ({exp_dir.name})")
        paths += save_figure(*curves_figure(frame), exp_dir / "corruption_curves")
    pairs = suite.pairs() if suite is not None else []
    claims = paired_claims(seeds, pairs, baseline)
    if claims:
        table = per_corruption_paired(seeds, pairs)
        atomic_write(exp_dir / "paired.md", "# Paired over seeds\n\n"
                     + "\n".join(f"- {c}" for c in claims) + "\n"
                     + (f"\nPer MNIST-C corruption, paired over seeds:\n\n{table}" if table
                        else ""))
        paths.append(exp_dir / "paired.md")
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths


def doc_blocks(exp_dir, suite=None):
    """The docs' blocks: mnist_c (its table), corruptions (the extras' summary), unreadable
    (which severities were left out), paired (the claims over seeds) and paired_corruptions
    (per MNIST-C corruption, paired over seeds)."""
    seeds = load_seed_frame(exp_dir)
    if seeds is None:
        return {}
    frame, baseline = pooled(seeds), baseline_of(suite)
    blocks = {}
    mnist_c = mnist_c_markdown(frame, baseline)
    if mnist_c is not None:
        blocks["mnist_c"] = markdown_table(mnist_c)
    extras = summary_markdown(frame, baseline)
    if extras is not None:
        blocks["corruptions"] = markdown_table(extras)
        blocks["unreadable"] = unreadable_note(frame)
    pairs = suite.pairs() if suite is not None else []
    claims = paired_claims(seeds, pairs, baseline)
    if claims:
        blocks["paired"] = "\n".join(f"- {c}" for c in claims)
        table = per_corruption_paired(seeds, pairs)
        if table:
            blocks["paired_corruptions"] = table
    return blocks
