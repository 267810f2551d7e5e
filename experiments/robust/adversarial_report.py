"""The adversarial report, from the jobs' records alone (metrics.jsonl, attacks/*.csv).

    accuracy.md, .csv     per network and eps: clean, each attack, the own-gradient worst case
                          (FGSM and PGD through the network's own backward pass: what a plain
                          evaluation reports) and the worst case over every attack, per image
    worst_case.md, .csv   the worst case, a row per network and a column per eps
    worst_case_curves.png, .csv  accuracy against eps per network: own-gradient and worst case
    checks.md, .csv       the sanity checks (experiments/robust/checks.py), PASS or FAIL
    autoattack.md, .csv   the cross-check on its subset: pyautoattack beside the study's
                          worst case on the same images (when it ran)

doc_blocks() gives the docs the worst-case and AutoAttack tables and a summary of the checks.

Accuracies come with 95% Clopper-Pearson intervals (exact binomial, over the images); with
several seeds the images of all seeds are pooled. Imports no model and no dataset.
"""

from pathlib import Path

import pandas as pd

from experiments.core.figures import new_figure, save_figure, series_colors
from experiments.core.intervals import clopper_pearson
from experiments.core.records import atomic_write
from experiments.core.runs import load_runs
from experiments.core.tables import markdown_table, write_table
from experiments.robust.checks import WHITE_BOX, all_checks, attack_rows, worst

OWN = "own-gradient worst"
WORST = "worst case"
INTERVAL = "95% Clopper-Pearson interval over the images"


def load_frames(exp_dir):
    """(images, steps): a row per (run, step, eps, image) and a row per step's metrics line."""
    images, steps = [], []
    for run in load_runs(exp_dir):
        clean = [r for r in run.records if r["attack"] == "clean"]
        if not clean:
            continue
        folder = Path(exp_dir) / run.network / f"seed-{run.seed}"
        tag = {"network": run.network, "label": clean[0]["label"], "seed": run.seed}
        for r in run.records:
            steps.append({**tag, **r})
            if "skipped" not in r:
                images.append(pd.read_csv(folder / "attacks" / f"{r['attack']}.csv").assign(
                    attack=r["attack"], role=r["role"], method=r["method"],
                    surrogate=r["surrogate"], **tag))
    if not images:
        return None, None
    return pd.concat(images, ignore_index=True), pd.DataFrame(steps)


def accuracy_frame(images):
    """Long form: per (network, attack, eps) the correct count, images, accuracy and interval,
    for clean, each attack, the own-gradient worst case and the worst case."""
    rows = attack_rows(images)
    own = rows[rows.method.isin(WHITE_BOX) & rows.surrogate.isna()]
    labels = images.drop_duplicates("network").set_index("network").label
    parts = [images[images.role == "clean"], rows,
             worst(own).reset_index().assign(attack=OWN),
             worst(rows).reset_index().assign(attack=WORST)]
    frame = (pd.concat(parts, ignore_index=True)
             .groupby(["network", "attack", "eps"], sort=False).correct.agg(["sum", "count"])
             .rename(columns={"sum": "correct", "count": "images"}).reset_index())
    lo, hi = clopper_pearson(frame.correct, frame.images)
    return frame.assign(label=frame.network.map(labels), accuracy=frame.correct / frame.images,
                        lo=lo, hi=hi)


def cell(row):
    return f"{100 * row.accuracy:.1f} [{100 * row.lo:.1f}, {100 * row.hi:.1f}]"


def accuracy_markdown(acc, attacks):
    """A row per (network, eps), a column per attack (in ``attacks``' order, then the worst
    cases): 'accuracy % [interval]'."""
    clean = acc[acc.attack == "clean"].set_index("network")
    table = acc[acc.attack != "clean"].assign(cell=lambda f: f.apply(cell, axis=1))
    wide = table.pivot_table(index=["network", "eps"], columns="attack", values="cell",
                             aggfunc="first", sort=False)
    wide = wide.reindex(columns=[*attacks, OWN, WORST]).fillna("n/a").reset_index()
    wide.insert(0, "label", wide.network.map(clean.label))
    wide.insert(3, "clean", wide.network.map(clean.apply(cell, axis=1)))
    return wide.drop(columns="network").rename(columns={"label": "network"})


def worst_markdown(acc):
    """The worst case: a row per network, a column per eps."""
    table = acc[acc.attack.isin(["clean", WORST])].assign(cell=lambda f: f.apply(cell, axis=1))
    table = table.assign(column=[("clean" if a == "clean" else f"eps {e:g}")
                                 for a, e in zip(table.attack, table.eps)])
    wide = table.pivot_table(index="label", columns="column", values="cell", aggfunc="first",
                             sort=False)
    return wide[list(dict.fromkeys(table.column))].reset_index().rename(
        columns={"label": "network"})


def has_k_winners(steps):
    """Per network: whether a surrogate-gradient step ran (they are skipped without k-winners)."""
    ran = steps[steps.surrogate.notna()]
    return ran.groupby("network").skipped.apply(lambda s: s.isna().any())


def worst_case_figure(acc, k_winners):
    """Two panels, accuracy (%) against eps from 0 (clean): own-gradient and worst case."""
    fig = new_figure(11, 4.6)
    axes = fig.subplots(1, 2, sharey=True)
    colors = series_colors(dict.fromkeys(acc.network))
    curves = []
    for ax, (attack, title) in zip(axes, [(OWN, "FGSM and PGD, the network's own gradients"),
                                          (WORST, "worst case over all attacks, per image")]):
        for network, g in acc.groupby("network", sort=False):
            curve = pd.concat([g[g.attack == "clean"], g[g.attack == attack]]).sort_values("eps")
            style = "-" if k_winners.get(network, False) else "--"
            ax.plot(curve.eps, 100 * curve.accuracy, style, marker="o", markersize=3,
                    color=colors[network], label=curve.label.iloc[0])
            ax.fill_between(curve.eps, 100 * curve.lo, 100 * curve.hi, color=colors[network],
                            alpha=0.12, linewidth=0)
            curves.append(curve.assign(panel=attack))
        ax.set(title=title, xlabel="L-inf eps (pixel units, images in [0, 1])")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the attacked test images (%)")
    axes[0].legend(fontsize="x-small")
    fig.suptitle("MNIST under L-inf attacks (solid: networks with k-winners, dashed: ReLU only; "
                 "bands: " + INTERVAL + ")")
    return fig, pd.concat(curves)[["panel", "network", "label", "eps", "correct", "images",
                                   "accuracy", "lo", "hi"]]


def autoattack_frame(images):
    """On the cross-check's images, per network and eps: the accuracy under pyautoattack and
    the study's worst case there."""
    cross = images[images.role == "crosscheck"]
    if cross.empty:
        return None
    both = pd.concat([worst(cross).rename("autoattack"),
                      worst(attack_rows(images)).rename("study")], axis=1, join="inner")
    frame = both.groupby(level=["network", "eps"], sort=False).agg(
        images=("study", "size"), autoattack=("autoattack", "mean"), study=("study", "mean"))
    labels = images.drop_duplicates("network").set_index("network").label
    return frame.reset_index().assign(label=lambda f: f.network.map(labels))


def autoattack_markdown(cross):
    return pd.DataFrame({"network": cross.label, "eps": cross.eps, "images": cross.images,
                         "AutoAttack %": 100 * cross.autoattack,
                         "study worst case %": 100 * cross.study})


def checks_markdown(checks, steps, title):
    """PASS / FAIL lines, grouped by check, and the steps that were skipped."""
    lines = [f"# {title}", "",
             f"{int(checks.passed.sum())} of {len(checks)} checks passed.", ""]
    for name, group in checks.groupby("check", sort=False):
        lines += [f"## {name}", ""]
        lines += [f"- **{'PASS' if c.passed else 'FAIL'}** {c.network}: {c.detail}"
                  for c in group.itertuples()]
        lines.append("")
    skipped = steps[steps.skipped.notna()] if "skipped" in steps else steps.iloc[:0]
    if len(skipped):
        lines += ["## Steps not run", ""]
        lines += [f"- {reason}: {', '.join(sorted(set(g.network + ' ' + g.attack)))}"
                  for reason, g in skipped.groupby("skipped")]
    return "\n".join(lines) + "\n"


def timing_notes(steps):
    seconds = steps.groupby("network", sort=False).seconds.sum()
    return ["Seconds per network (all steps, all seeds): "
            + ", ".join(f"{n} {s:.0f}" for n, s in seconds.items()) + "."]


def write_report(exp_dir, suite=None):
    """Write the tables, figure and checks of an adversarial experiment; return the paths."""
    exp_dir = Path(exp_dir)
    images, steps = load_frames(exp_dir)
    if images is None:
        print(f"report: no attacked network under {exp_dir} yet")
        return []
    seeds = ", ".join(map(str, sorted(set(images.seed))))
    acc = accuracy_frame(images)
    notes = [f"Cells: accuracy % [{INTERVAL}]; n/a: not run (a surrogate gradient on a network "
             f"without k-winners is its own gradient).", *timing_notes(steps)]
    attacks = list(dict.fromkeys(steps.attack[steps.role == "attack"]))
    paths = list(write_table(acc, exp_dir / "accuracy", notes=notes,
                             markdown=accuracy_markdown(acc, attacks),
                             title=f"Accuracy under L-inf attacks ({exp_dir.name}, seeds {seeds})"))
    paths += write_table(acc[acc.attack.isin(["clean", WORST])], exp_dir / "worst_case",
                         title="Worst case over all attacks, per image", notes=notes[:1],
                         markdown=worst_markdown(acc))
    paths += save_figure(*worst_case_figure(acc, has_k_winners(steps)), exp_dir / "worst_case_curves")
    cross = autoattack_frame(images)
    if cross is not None:
        paths += write_table(cross, exp_dir / "autoattack", markdown=autoattack_markdown(cross),
                             title="Cross-check: pyautoattack and the study's worst case, on "
                                   "the same images")
    checks = all_checks(images, steps)
    atomic_write(exp_dir / "checks.csv", checks.to_csv(index=False))
    atomic_write(exp_dir / "checks.md", checks_markdown(checks, steps,
                                                        f"Sanity checks ({exp_dir.name})"))
    paths += [exp_dir / "checks.md", exp_dir / "checks.csv"]
    print("report: wrote " + ", ".join(str(p) for p in paths))
    return paths


def checks_summary(checks, labels):
    """A row per sanity check: how many networks pass it, and which fail it."""
    rows = [{"check": name, "passed": f"{int(g.passed.sum())} of {len(g)}",
             "failed by": ", ".join(g.network[~g.passed].map(labels)) or "-"}
            for name, g in checks.groupby("check", sort=False)]
    return pd.DataFrame(rows)


def doc_blocks(exp_dir, suite=None):
    """The docs' blocks, from the records alone: worst_case (accuracy % [interval] per network
    and eps), autoattack (the cross-check, when it ran) and checks (a row per check)."""
    images, steps = load_frames(exp_dir)
    if images is None:
        return {}
    acc = accuracy_frame(images)
    labels = images.drop_duplicates("network").set_index("network").label
    blocks = {"worst_case": markdown_table(worst_markdown(acc)),
              "checks": markdown_table(checks_summary(all_checks(images, steps), labels))}
    cross = autoattack_frame(images)
    if cross is not None:
        blocks["autoattack"] = markdown_table(autoattack_markdown(cross))
    return blocks
