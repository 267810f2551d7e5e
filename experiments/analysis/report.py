"""The analysis report, from the jobs' records alone (units.csv, overlap.csv, metrics.jsonl).

    layers.md, .csv        per network and layer: weight norms, fan-in, angles, duty-cycle
                           entropy, units that never win, winner overlap and output change under
                           noise, and the chance values for unrelated inputs
    overlap.png, .csv      winner overlap and relative output change vs noise, layer by layer
    weight_norms.png, .csv distribution of the units' weight norms, per layer and network (the
                           CSV: each box's quartiles and whiskers)
    angles.png, .csv       distribution of the per-unit mean angle to the inputs, all inputs and
                           the winning ones (the CSV: the boxes)
    duty_cycles.png, .csv  the sorted training duty cycles of the k-winners layers
    seeds.md, .csv         with several seeds: each layer's main measures per seed, their mean
                           over seeds with a 95% t interval, and per pair of the experiment
                           file's ``compare:`` the paired difference by seed (same seed: same
                           noisy test sets; experiments/core/stats.py)

Means over seeds where several were analysed; doc_blocks() gives the docs the layer table (and
the seeds table, with several seeds).
Imports no model and no dataset.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.figures import new_figure, save_figure, series_colors
from experiments.core.measures import binary_entropy_ratio, entropy_ratio
from experiments.core.runs import load_runs
from experiments.core.stats import paired, t_interval
from experiments.core.tables import markdown_table, write_table

LEVELS_SHOWN = (0.1, 0.3, 0.5)
LAYER_ORDER = ("conv1", "conv2", "hidden", "output")


def load_frames(exp_dir):
    """(units, overlap) DataFrames of every finished run, with network, label and seed."""
    units, overlap = [], []
    for run in load_runs(exp_dir):
        folder = Path(exp_dir) / run.network / f"seed-{run.seed}"
        if not run.done:
            continue
        tag = {"network": run.network, "label": run.records[0]["label"], "seed": run.seed}
        units.append(pd.read_csv(folder / "units.csv").assign(**tag))
        overlap.append(pd.read_csv(folder / "overlap.csv").assign(**tag))
    if not units:
        return None, None
    return pd.concat(units, ignore_index=True), pd.concat(overlap, ignore_index=True)


def layer_table(units, overlap):
    """One row per (network, layer): means over units (and seeds)."""
    rows = []
    for (network, layer), group in units.groupby(["network", "layer"], sort=False):
        seeds = group.groupby("seed")
        row = {"network": network, "label": group.label.iloc[0], "layer": layer,
               "kind": group.kind.iloc[0], "seeds": seeds.ngroups,
               "units": int(seeds.size().iloc[0]),
               "weight_norm_mean": group.weight_norm.mean(),
               "weight_norm_initial": group.initial_weight_norm.mean()
               if "initial_weight_norm" in group else np.nan,
               "weight_norm_cv": seeds.weight_norm.agg(lambda w: w.std() / w.mean()).mean(),
               "fan_in": group.fan_in.mean(), "fan_in_total": int(group.fan_in_total.iloc[0]),
               "angle_all": group.angle_all_mean.mean(),
               "angle_winners": group.angle_winners_mean.mean(),
               "duty_entropy": seeds.duty_cycle.agg(entropy_ratio).mean(),
               "duty_entropy_binary": _binary_entropy(seeds),
               "test_entropy": seeds.test_win_rate.agg(entropy_ratio).mean(),
               "never_win": seeds.test_win_rate.agg(lambda r: int((r == 0).sum())).mean()}
        row.update(_overlap_columns(overlap[(overlap.network == network)
                                            & (overlap.layer == layer)]))
        rows.append(row)
    return _ordered(pd.DataFrame(rows))


def _overlap_columns(frame):
    means = frame.groupby("level").mean(numeric_only=True)
    cols = {}
    for level in LEVELS_SHOWN:
        row = means.loc[level] if level in means.index else None
        cols[f"overlap_{level:.1f}"] = np.nan if row is None else row.get("overlap", np.nan)
        cols[f"change_{level:.1f}"] = np.nan if row is None else row.relative_change
    first = means.iloc[0] if len(means) else {}
    cols["winners"] = first.get("winners", np.nan)
    cols["space"] = first.get("space", np.nan)
    cols["chance_overlap"] = first.get("chance_overlap", np.nan)
    cols["chance_match"] = first.get("chance_match", np.nan)
    for key in ("other_digit_overlap", "other_digit_match", "same_digit_overlap",
                "same_digit_match"):
        cols[key] = first.get(key, np.nan)
    return cols


def _binary_entropy(seeds):
    """The authors' duty-cycle entropy of a layer, mean over seeds (nan without k and n)."""
    values = [binary_entropy_ratio(g.duty_cycle, g.k.iloc[0], g.n.iloc[0]) for _, g in seeds
              if "k" in g and g.k.notna().all()]
    return float(np.mean(values)) if values else np.nan


def _ordered(frame):
    rank = {name: i for i, name in enumerate(LAYER_ORDER)}
    networks = list(dict.fromkeys(frame.network))
    return frame.sort_values(by=["network", "layer"], key=lambda col: col.map(
        rank if col.name == "layer" else {n: i for i, n in enumerate(networks)}),
        ignore_index=True)


def layer_markdown(table):
    """The layer table with rounded, labelled columns."""
    pct = lambda v: "" if pd.isna(v) else f"{100 * v:.0f}%"  # noqa: E731
    out = pd.DataFrame({
        "network": table.label, "layer": table.layer, "activation": table.kind,
        "units": table.units,
        "winners of n": [("" if pd.isna(w) else f"{w:.0f} of {n:,.0f}")
                         for w, n in zip(table.winners, table.space)],
        "weight norm (CV)": [f"{m:.3f} ({cv:.2f})" for m, cv in
                             zip(table.weight_norm_mean, table.weight_norm_cv)],
        "at init": [("" if pd.isna(i) else f"{i:.3f} (x{m / i:.2f})") for m, i in
                    zip(table.weight_norm_mean, table.weight_norm_initial)],
        "fan-in": [f"{f:.0f} of {t}" for f, t in zip(table.fan_in, table.fan_in_total)],
        "angle: all / winners (deg)": [_pair(a, w) for a, w in
                                       zip(table.angle_all, table.angle_winners)],
        "entropy: train / test": [_pair(d, t, ".2f") for d, t in
                                  zip(table.duty_entropy, table.test_entropy)],
        "entropy (nupic.torch)": [("" if pd.isna(v) else f"{v:.2f}")
                                  for v in table.duty_entropy_binary],
        "never win": [("" if pd.isna(v) else f"{v:.0f}") for v in table.never_win]})
    for level in LEVELS_SHOWN:
        out[f"overlap {level:.0%}"] = [pct(v) for v in table[f"overlap_{level:.1f}"]]
    for level in LEVELS_SHOWN:
        out[f"change {level:.0%}"] = [pct(v) for v in table[f"change_{level:.1f}"]]
    out["chance overlap"] = [pct(v) for v in table.chance_overlap]
    out["chance match"] = ["" if pd.isna(v) else f"{v:.1e}" for v in table.chance_match]
    out["other digit: overlap / match"] = [_pct_pair(o, m) for o, m in
                                           zip(table.other_digit_overlap, table.other_digit_match)]
    out["same digit: overlap / match"] = [_pct_pair(o, m) for o, m in
                                          zip(table.same_digit_overlap, table.same_digit_match)]
    return out


def _pct_pair(a, b):
    return "" if pd.isna(a) else f"{100 * a:.0f}% / {100 * b:.1f}%"


# The measures of a layer compared across seeds: (column of seed_measures, label, scale, digits).
SEED_MEASURES = (("weight_norm", "weight norm", 1, 3), ("norm_growth", "norm / initial", 1, 3),
                 ("duty_entropy_binary", "entropy (nupic.torch)", 1, 2),
                 ("never_win", "units never winning", 1, 0),
                 ("overlap_0.1", "overlap at 10% noise (%)", 100, 1),
                 ("overlap_0.5", "overlap at 50% noise (%)", 100, 1),
                 ("other_digit_overlap", "overlap with another digit (%)", 100, 1))


def seed_measures(units, overlap):
    """One row per (network, layer, seed): the SEED_MEASURES of that seed's layer."""
    rows = []
    for (network, layer, seed), group in units.groupby(["network", "layer", "seed"], sort=False):
        row = layer_table(group, overlap[overlap.seed == seed]).iloc[0]
        rows.append({"network": network, "label": row.label, "layer": layer, "seed": seed,
                     "weight_norm": row.weight_norm_mean,
                     "norm_growth": row.weight_norm_mean / row.weight_norm_initial,
                     "duty_entropy_binary": row.duty_entropy_binary,
                     "never_win": row.never_win, "overlap_0.1": row["overlap_0.1"],
                     "overlap_0.5": row["overlap_0.5"],
                     "other_digit_overlap": row.other_digit_overlap})
    return pd.DataFrame(rows)


def seeds_table(units, overlap, pairs=()):
    """Per (network or pair, layer, measure): n seeds, the mean over them with its 95% t
    interval; for a pair (a, b) the mean of a - b by seed, its intervals and tests. None
    with fewer than two seeds."""
    per_seed = seed_measures(units, overlap)
    if per_seed.seed.nunique() < 2:
        return None
    rows = []
    for (network, layer), group in per_seed.groupby(["network", "layer"], sort=False):
        for column, name, scale, digits in SEED_MEASURES:
            values = group[column].dropna().to_numpy() * scale
            if len(values):
                low, high = t_interval(values)
                rows.append({"compared": group.label.iloc[0], "layer": layer, "measure": name,
                             "n": len(values), "mean": values.mean(), "low": low,
                             "high": high, "digits": digits})
    for a, b in pairs:
        left, right = (per_seed[per_seed.network == n] for n in (a, b))
        for layer in [l for l in LAYER_ORDER if l in set(left.layer) & set(right.layer)]:
            la, lb = (f[f.layer == layer].set_index("seed") for f in (left, right))
            common = sorted(set(la.index) & set(lb.index))
            for column, name, scale, digits in SEED_MEASURES:
                va, vb = la.loc[common, column] * scale, lb.loc[common, column] * scale
                keep = (va.notna() & vb.notna()).to_numpy()
                if keep.sum() < 1:
                    continue
                c = paired(va.to_numpy()[keep], vb.to_numpy()[keep])
                rows.append({"compared": f"{la.label.iloc[0]} - {lb.label.iloc[0]}",
                             "layer": layer, "measure": name, "n": c.n, "mean": c.mean,
                             "low": c.t_low, "high": c.t_high, "boot_low": c.boot_low,
                             "boot_high": c.boot_high, "sign_p": c.sign_p,
                             "wilcoxon_p": c.wilcoxon_p, "digits": digits})
    return pd.DataFrame(rows)


def seeds_markdown(table):
    """seeds_table as one row per (layer, measure): a column per network, mean [95% t
    interval] over its seeds, and per pair the paired difference with its tests."""
    def cell(row):
        fmt = lambda v: "" if pd.isna(v) else f"{v:.{int(row.digits)}f}"  # noqa: E731
        return f"{fmt(row['mean'])} [{fmt(row.low)}, {fmt(row.high)}] (n {row.n})"

    def p(value):
        return "" if pd.isna(value) else (f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}")
    rows = {}
    for _, row in table.iterrows():
        out = rows.setdefault((row.layer, row.measure), {"layer": row.layer,
                                                         "measure": row.measure})
        out[row.compared] = cell(row)
        if not pd.isna(row.get("sign_p", np.nan)):
            out[f"{row.compared}: sign p / Wilcoxon p"] = (f"{p(row.sign_p)} / "
                                                           f"{p(row.wilcoxon_p)}")
    frame = pd.DataFrame(list(rows.values()))
    rank = {name: i for i, name in enumerate(LAYER_ORDER)}
    order = {name: i for i, (_, name, _, _) in enumerate(SEED_MEASURES)}
    frame = frame.sort_values(by=["layer", "measure"], key=lambda col: col.map(
        rank if col.name == "layer" else order), ignore_index=True)
    return frame.fillna("")


SEEDS_NOTES = [
    "A column per network: the measure's mean over its seeds [95% t interval of that mean] "
    "(n seeds). A column per pair a - b: the mean of the per-seed differences (the same seed "
    "gives both networks the same noisy test sets) [95% t interval], then the exact sign test "
    "and the Wilcoxon signed-rank test; seeds.csv adds the bootstrap intervals "
    "(experiments/core/stats.py). The measures are those of layers.md, per seed."]


def _pair(a, b, spec=".1f"):
    show = lambda v: "-" if pd.isna(v) else format(v, spec)  # noqa: E731
    return f"{show(a)} / {show(b)}"


NOTES = [
    "- Weight norm: mean L2 norm of the units' incoming weights; CV = std / mean over units. "
    "Under i.i.d. input noise of variance s², a unit's pre-activation varies by s² |w|². "
    "At init: the same network as training started it (built from its config after "
    "torch.manual_seed(seed)), and the trained norm's ratio to it.",
    "- Angle: between a unit's weight vector and its input (a conv: the patch under the "
    "pooling maximum), mean over the clean test set, then over units; 'winners': only the "
    "inputs where the unit wins (k-winners) or is active (ReLU).",
    "- Entropy: of the training duty cycles (k-winners only) and of the clean test-set win "
    "rates, each normalised to sum to 1, divided by its maximum log n (1 = work spread "
    "evenly); never win: units with no win on the clean test set. Entropy (nupic.torch): the "
    "authors' measure, the binary entropies H(d_i) of the duty cycles summed, over the same "
    "count at the target density k/n (1 = every unit active k/n of the time).",
    "- Overlap at p% noise: the share of a sample's clean winners (k-winners: the top k; ReLU: "
    "the active units) still winners on its noisy copy, mean over the test set; change: "
    "|y_noisy - y_clean| / |y_clean| of the layer's output.",
    "- Chance overlap: winners / n, the expected overlap of a uniformly random winner set; "
    "chance match: the section-3 probability that such a set shares at least half of the "
    "winners (hypergeometric tail, s = a = winners, theta = a / 2). Real inputs are not "
    "uniform: other digit / same digit: the overlap of each clean test image's winners with "
    "those of the next test image of another digit (of the same digit) in its batch of 500, "
    "mean over the test set, and the share of images whose partner keeps at least half of "
    "their winners (match).",
]


def overlap_figure(overlap):
    """Winner overlap (top; the output layer: unchanged predictions) and relative output change
    (bottom) vs noise, one column per layer, a line per network (mean over seeds); dotted: the
    chance overlap."""
    layers = [name for name in LAYER_ORDER if name in set(overlap.layer)]
    means = overlap.groupby(["network", "label", "layer", "kind", "level"], sort=False).mean(
        numeric_only=True).reset_index()
    colors = series_colors(dict.fromkeys(means.network))
    sparse = set(means.network[means.kind == "k-winners"])
    fig = new_figure(4.2 * len(layers), 7.5)
    axes = fig.subplots(2, len(layers), squeeze=False)
    for j, layer in enumerate(layers):
        for network, curve in means[means.layer == layer].groupby("network", sort=False):
            style = {"color": colors[network], "marker": "o", "markersize": 3,
                     "linestyle": "-" if network in sparse else "--"}
            kept = curve.prediction_kept if layer == "output" else curve.overlap
            axes[0][j].plot(100 * curve.level, 100 * kept, label=curve.label.iloc[0], **style)
            if layer != "output":
                axes[0][j].axhline(100 * curve.chance_overlap.iloc[0], color=colors[network],
                                   linestyle=":", linewidth=0.8)
            axes[1][j].plot(100 * curve.level, 100 * curve.relative_change, **style)
        what = ("predictions kept", "samples with the same class (%)") if layer == "output" \
            else ("winners kept", "clean winners kept (%)")
        axes[0][j].set(title=f"{layer}: {what[0]}", ylabel=what[1])
        axes[1][j].set(title=f"{layer}: output change", xlabel="noise level (% of pixels)",
                       ylabel="|y_noisy - y_clean| / |y_clean| (%)")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="x-small", loc="lower left")
    fig.suptitle("Winners under noise (solid: networks with k-winners, dashed: ReLU only; "
                 "dotted: chance overlap)")
    return fig, means


def distribution_figure(units, column, title, ylabel, layers=("conv1", "conv2", "hidden")):
    """Box plots of a per-unit column, one panel per layer, a box per network; returns the
    figure and the box statistics behind it (quartiles, whiskers at 1.5 IQR)."""
    layers = [name for name in layers if name in set(units.layer)]
    fig = new_figure(4.5 * len(layers), 4.6)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    rows = []
    for ax, layer in zip(axes, layers):
        part = units[units.layer == layer].dropna(subset=[column])
        groups = list(part.groupby("network", sort=False))
        ax.boxplot([g[column].to_numpy() for _, g in groups], showfliers=False)
        ax.set_xticks(range(1, len(groups) + 1),
                      [g.label.iloc[0] for _, g in groups], rotation=60, ha="right",
                      fontsize="x-small")
        ax.set(title=layer, ylabel=ylabel)
        ax.grid(alpha=0.3, axis="y")
        rows += [box_row(network, g.label.iloc[0], layer, g[column]) for network, g in groups]
    fig.suptitle(title)
    return fig, pd.DataFrame(rows)


def box_row(network, label, layer, values):
    """What a box plot of ``values`` draws: quartiles and the 1.5-IQR whiskers."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    inside = values[(values >= q1 - 1.5 * (q3 - q1)) & (values <= q3 + 1.5 * (q3 - q1))]
    return {"network": network, "label": label, "layer": layer, "units": len(values),
            "mean": values.mean(), "whisker_low": inside.min(), "q1": q1, "median": median,
            "q3": q3, "whisker_high": inside.max()}


def angles_figure(units):
    """Per-unit mean angle to the inputs: all inputs and the winning ones, side by side."""
    long = pd.concat([units.assign(subset="all", angle=units.angle_all_mean),
                      units.assign(subset="winners", angle=units.angle_winners_mean)])
    long["label"] = long.label + " (" + long.subset + ")"
    long["network"] = long.network + "/" + long.subset
    return distribution_figure(long, "angle", "Angle between a unit's weights and its inputs "
                               "(per-unit mean over the clean test set)", "angle (degrees)")


def duty_cycle_figure(units):
    """Sorted training duty cycles (descending) of each k-winners layer, a line per network."""
    kw = units[units.kind == "k-winners"].dropna(subset=["duty_cycle"])
    layers = [name for name in LAYER_ORDER if name in set(kw.layer)]
    fig = new_figure(4.2 * max(len(layers), 1), 4.2)
    axes = fig.subplots(1, max(len(layers), 1), squeeze=False)[0]
    colors = series_colors(dict.fromkeys(units.network))
    rows = []
    for ax, layer in zip(axes, layers):
        for (network, seed), group in kw[kw.layer == layer].groupby(["network", "seed"],
                                                                     sort=False):
            d = np.sort(group.duty_cycle.to_numpy())[::-1]
            rank = np.arange(len(d)) / max(len(d) - 1, 1)
            ax.plot(100 * rank, d, color=colors[network], label=group.label.iloc[0])
            rows += [{"network": network, "seed": seed, "layer": layer, "rank": r, "duty": v}
                     for r, v in zip(rank, d)]
        ax.set(title=f"{layer}: duty cycles, sorted", xlabel="unit rank (% of units)",
               ylabel="duty cycle (fraction of training inputs won)")
        ax.grid(alpha=0.3)
    if layers:
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axes[0].legend(unique.values(), unique.keys(), fontsize="x-small")
    fig.suptitle("Training duty cycles of the k-winners layers")
    return fig, pd.DataFrame(rows)


def write_report(exp_dir, suite=None):
    """Write the tables and figures of an analysis experiment; return the paths."""
    exp_dir = Path(exp_dir)
    units, overlap = load_frames(exp_dir)
    if units is None:
        print(f"report: no finished analysis under {exp_dir} yet")
        return []
    table = layer_table(units, overlap)
    paths = list(write_table(table, exp_dir / "layers", notes=NOTES,
                             title=f"Inside the trained networks ({exp_dir.name}, seeds "
                                   f"{', '.join(map(str, sorted(set(units.seed))))})",
                             markdown=layer_markdown(table)))
    paths += save_figure(*overlap_figure(overlap), exp_dir / "overlap")
    paths += save_figure(*distribution_figure(units, "weight_norm", "Weight-vector L2 norm per "
                                              "unit", "|w| (L2)"), exp_dir / "weight_norms")
    paths += save_figure(*angles_figure(units), exp_dir / "angles")
    paths += save_figure(*duty_cycle_figure(units), exp_dir / "duty_cycles")
    seeds = seeds_table(units, overlap, suite.pairs() if suite is not None else ())
    if seeds is not None:
        paths += list(write_table(seeds.drop(columns="digits"), exp_dir / "seeds",
                                  notes=SEEDS_NOTES, markdown=seeds_markdown(seeds),
                                  title=f"Inside the trained networks over seeds "
                                        f"({exp_dir.name})"))
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths


def doc_blocks(exp_dir, suite=None):
    """The docs' blocks ``layers`` (the table of layers.md) and, with several seeds, ``seeds``
    (that of seeds.md), from the records alone."""
    units, overlap = load_frames(exp_dir)
    if units is None:
        return {}
    blocks = {"layers": markdown_table(layer_markdown(layer_table(units, overlap)))}
    seeds = seeds_table(units, overlap, suite.pairs() if suite is not None else ())
    if seeds is not None:
        blocks["seeds"] = markdown_table(seeds_markdown(seeds))
    return blocks
