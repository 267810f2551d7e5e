"""The adversarial report, from the jobs' records alone (adversarial_records.py).

    accuracy.md, .csv     per network and eps: clean, each L-inf attack (AutoAttack and the
                          runs with more steps included), the own-gradient worst case (FGSM
                          and PGD through the network's own backward pass: what a plain
                          evaluation reports) and the worst case over every attack, per image
    worst_case.md, .csv   the worst case, a row per network and a column per eps
    worst_case_curves.png, .csv  accuracy against eps per network: own-gradient and worst case
    autoattack.md, .csv   AutoAttack per network and eps: robust accuracy after each of its
                          attacks, beside the worst case without it and with it; its warnings
    checks.md, .csv       the sanity checks (experiments/robust/checks.py), PASS or FAIL
    and adversarial_views.py's L0, minimum-norm, diagnostics and paired tables and figures

doc_blocks() gives the docs the worst-case, AutoAttack, L0, minimum-norm, diagnostics and
paired tables and a summary of the checks.

Accuracies come with 95% Clopper-Pearson intervals (exact binomial, over the images); with
several seeds the images of all seeds are pooled. Imports no model and no dataset.
"""

from pathlib import Path

import pandas as pd

from experiments.core.figures import new_figure, save_figure, save_png, series_colors
from experiments.core.intervals import clopper_pearson
from experiments.core.records import atomic_write
from experiments.core.tables import markdown_table, write_table
from experiments.robust import adversarial_views as views
from experiments.robust.adversarial_records import load_records
from experiments.robust.checks import AUTOATTACK as STANDARD
from experiments.robust.checks import KEYS, WHITE_BOX, all_checks, attack_rows, worst

OWN = "own-gradient worst"
WORST = "worst case"
INTERVAL = "95% Clopper-Pearson interval over the images"


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
    wide = wide.reindex(columns=[*attacks, OWN, WORST]).astype(object).fillna("n/a")
    wide = wide.reset_index()
    wide.insert(0, "label", wide.network.map(clean.label))
    wide.insert(3, "clean", wide.network.map(clean.apply(cell, axis=1)))
    return wide.drop(columns="network").rename(columns={"label": "network"})


def worst_markdown(acc, images=None):
    """The worst case: a row per network, a column per eps; with ``images``, also the eps at
    which AutoAttack ran on each network (a worst case without it is weaker)."""
    table = acc[acc.attack.isin(["clean", WORST])].assign(cell=lambda f: f.apply(cell, axis=1))
    table = table.assign(column=[("clean" if a == "clean" else f"eps {e:g}")
                                 for a, e in zip(table.attack, table.eps)])
    wide = table.pivot_table(index="label", columns="column", values="cell", aggfunc="first",
                             sort=False)
    wide = wide[list(dict.fromkeys(table.column))]
    if images is not None:
        auto = images[(images.method == "autoattack") & images.role.isin(["attack"])]
        ran = auto.groupby("label").eps.agg(lambda e: ", ".join(f"{v:g}" for v in sorted(set(e))))
        wide["AutoAttack at eps"] = ran.reindex(wide.index).astype(object).fillna("not run")
    return wide.reset_index().rename(columns={"label": "network"})


def family(method, surrogate, eot):
    """The kind of attack a row comes from, for the table of what each kind adds."""
    if method == "pgd" and eot:
        return "EOT"
    if surrogate == "soft":
        return "soft top-k"
    if surrogate:
        return "BPDA identity / ReLU"
    return {"autoattack": "AutoAttack", "square": "Square", "transfer": "transfer"}.get(
        method, "own gradient")


FAMILIES = ["own gradient", "BPDA identity / ReLU", "soft top-k", "EOT", "Square", "transfer",
            "AutoAttack"]


def families_frame(images):
    """Per network and eps: the worst case, and the worst case without each kind of attack
    (how much each adds: what only it finds)."""
    rows = attack_rows(images)
    rows = rows.assign(family=[family(m, s, e) for m, s, e in
                               zip(rows.method, rows.surrogate, rows.eot)])
    full = worst(rows).rename("worst case")
    parts = [full] + [worst(rows[rows.family != f]).reindex(full.index).fillna(1)
                      .rename(f"without {f}") for f in FAMILIES if f in set(rows.family)]
    frame = pd.concat(parts, axis=1).groupby(level=["network", "eps"], sort=False).mean()
    labels = images.drop_duplicates("network").set_index("network").label
    return frame.reset_index().assign(label=lambda f: f.network.map(labels))


def families_markdown(frame):
    table = frame.drop(columns=["network", "label"]).copy()
    for c in table.columns.drop("eps"):
        table[c] = (100 * table[c]).map(lambda v: f"{v:.1f}")
    table.insert(0, "network", frame.label)
    return table


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
    """Per network and eps, on AutoAttack's images: its robust accuracy after each of its
    attacks in turn (an image fooled by a later one was still robust), and the worst case over
    the other attacks and over all of them."""
    rows = attack_rows(images)
    auto = rows[rows.method == "autoattack"]
    if auto.empty:
        return None
    frame = (auto.set_index(KEYS)[["correct", "fooled_by", "label"]]
             .join(worst(rows[rows.method != "autoattack"]).rename("without"))
             .join(worst(rows).rename("with")))
    out = []
    for (network, eps), g in frame.groupby(level=["network", "eps"], sort=False):
        after = {f"after {name}": ((g.correct == 1)
                                   | g.fooled_by.isin(STANDARD[i + 1:])).mean()
                 for i, name in enumerate(STANDARD)}
        out.append({"network": network, "label": g.label.iloc[0], "eps": eps,
                    "images": len(g), **after, "worst without autoattack": g.without.mean(),
                    "worst case": g["with"].mean()})
    return pd.DataFrame(out)


def autoattack_markdown(cross):
    table = pd.DataFrame({"network": cross.label, "eps": cross.eps, "images": cross.images})
    for column in [f"after {name}" for name in STANDARD] + ["worst without autoattack",
                                                            "worst case"]:
        table[column + " %"] = (100 * cross[column]).map(lambda v: f"{v:.1f}")
    return table


def autoattack_warnings(steps):
    """'- network seed s: warning (eps ...)' lines, each warning once per run."""
    auto = steps[(steps.method == "autoattack") & steps.results.notna()]
    lines = []
    for (label, seed), g in auto.groupby(["label", "seed"], sort=False):
        seen = {}
        for results in g.results:
            for r in results:
                for w in r.get("warnings", []):
                    seen.setdefault(w, []).append(f"{r['eps']:g}")
        lines += [f"- {label} seed {seed}: {w} (eps {', '.join(e)})" for w, e in seen.items()]
    return lines


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


def linf_outputs(records, exp_dir):
    """The L-inf tables, figure and AutoAttack table; the written paths."""
    images, steps = records.linf, records.steps
    seeds = ", ".join(map(str, sorted(set(images.seed))))
    acc = accuracy_frame(images)
    notes = [f"Cells: accuracy % [{INTERVAL}]; n/a: not run (a surrogate gradient on a network "
             f"without k-winners is its own gradient). The worst case is the minimum per image "
             f"over every attack row, AutoAttack and the runs with more steps (on their first "
             f"images) included.", *timing_notes(steps)]
    attacks = list(dict.fromkeys(steps.attack[steps.role.isin(["attack", "convergence"])
                                              & (steps.threat.fillna("linf") == "linf")]))
    paths = list(write_table(acc, exp_dir / "accuracy", notes=notes,
                             markdown=accuracy_markdown(acc, attacks),
                             title=f"Accuracy under L-inf attacks ({exp_dir.name}, seeds {seeds})"))
    paths += write_table(acc[acc.attack.isin(["clean", WORST])], exp_dir / "worst_case",
                         title="Worst case over all attacks, per image", notes=notes[:1],
                         markdown=worst_markdown(acc, images))
    paths += save_figure(*worst_case_figure(acc, has_k_winners(steps)),
                         exp_dir / "worst_case_curves")
    kinds = families_frame(images)
    paths += write_table(kinds, exp_dir / "attack_kinds", markdown=families_markdown(kinds),
                         title="The worst case without each kind of attack (accuracy %): "
                               "what only that kind finds",
                         notes=["A kind that never ran on a network leaves its column equal "
                                "to the worst case."])
    cross = autoattack_frame(images)
    if cross is not None:
        warnings = autoattack_warnings(steps) or ["- none"]
        paths += write_table(cross, exp_dir / "autoattack", markdown=autoattack_markdown(cross),
                             title="AutoAttack (standard version, pyautoattack): robust "
                                   "accuracy after each of its attacks",
                             notes=["pyautoattack's warnings:", *warnings])
    return paths


def view_outputs(records, exp_dir, suite):
    """adversarial_views' tables and figures, for the records that have them; the paths."""
    paths = []
    if records.l0 is not None:
        frame = views.l0_frame(records)
        clean = records.linf[records.linf.role == "clean"].groupby("network").correct.mean()
        paths += write_table(frame, exp_dir / "l0", markdown=views.l0_markdown(frame),
                             title="L0: random pixels and the worst case over the L0 attacks "
                                   "(accuracy %)")
        paths += _figure(views.l0_figure(frame, clean), frame, exp_dir / "l0_curves")
    if records.distances is not None:
        frame = views.min_norm_frame(records)
        paths += write_table(frame, exp_dir / "min_norm", markdown=views.min_norm_markdown(frame),
                             title="Minimum-norm adversarial distances (pixel units)")
        curves = views.min_norm_curves(records)
        points = worst(attack_rows(records.linf)).groupby(["network", "eps"]).mean()
        paths += _figure(views.min_norm_figure(curves, points.reset_index()), curves,
                         exp_dir / "min_norm_curves")
    if records.diagnostics is not None:
        frame = views.diagnostics_frame(records)
        paths += write_table(frame, exp_dir / "diagnostics",
                             markdown=views.diagnostics_markdown(frame),
                             title="Gradient-masking diagnostics")
        curves = views.loss_curves(records)
        if not curves.empty:
            paths += _figure(views.loss_figure(curves), curves, exp_dir / "loss_along_gradient")
    pairs = views.paired_frame(records, suite.pairs() if suite is not None else [])
    if not pairs.empty:
        atomic_write(exp_dir / "paired.csv", pairs.to_csv(index=False))
        atomic_write(exp_dir / "paired.md", "# Paired comparisons on the same images\n\n"
                     + "\n".join(f"- {line}" for line in views.paired_claims(
                         pairs, records.labels)) + "\n")
        paths += [exp_dir / "paired.md", exp_dir / "paired.csv"]
    return paths


def _figure(fig, frame, stem):
    save_png(fig, stem.with_suffix(".png"))
    atomic_write(stem.with_suffix(".csv"), frame.to_csv(index=False))
    return [stem.with_suffix(".png"), stem.with_suffix(".csv")]


def write_report(exp_dir, suite=None):
    """Write the tables, figures and checks of an adversarial experiment; return the paths."""
    exp_dir = Path(exp_dir)
    records = load_records(exp_dir)
    if records is None:
        print(f"report: no attacked network under {exp_dir} yet")
        return []
    paths = linf_outputs(records, exp_dir) + view_outputs(records, exp_dir, suite)
    checks = all_checks(records)
    atomic_write(exp_dir / "checks.csv", checks.to_csv(index=False))
    atomic_write(exp_dir / "checks.md", checks_markdown(checks, records.steps,
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


def doc_blocks(exp_dir, suite=None, progress=None):
    """The docs' blocks, from the records alone: worst_case, autoattack, l0, min_norm,
    diagnostics, paired (the claims with their tests) and checks (a row per check); progress,
    ``progress(records.steps)``, when given (the task's: it knows the plan)."""
    records = load_records(exp_dir)
    if records is None:
        return {}
    acc = accuracy_frame(records.linf)
    blocks = {"worst_case": markdown_table(worst_markdown(acc, records.linf)),
              "attack_kinds": markdown_table(families_markdown(families_frame(records.linf))),
              "checks": markdown_table(checks_summary(all_checks(records), records.labels))}
    cross = autoattack_frame(records.linf)
    if cross is not None:
        blocks["autoattack"] = markdown_table(autoattack_markdown(cross))
        blocks["autoattack_warnings"] = "\n".join(autoattack_warnings(records.steps)
                                                   or ["- none"]) + "\n"
    else:  # the docs say so rather than keep an old table
        blocks["autoattack"] = "AutoAttack has not finished an eps on any network yet.\n"
        blocks["autoattack_warnings"] = "- none recorded: AutoAttack has not run yet\n"
    if records.l0 is not None:
        blocks["l0"] = markdown_table(views.l0_markdown(views.l0_frame(records)))
    if records.distances is not None:
        blocks["min_norm"] = markdown_table(views.min_norm_markdown(views.min_norm_frame(records)))
    if records.diagnostics is not None:
        blocks["diagnostics"] = markdown_table(views.diagnostics_markdown(
            views.diagnostics_frame(records)))
    pairs = views.paired_frame(records, suite.pairs() if suite is not None else [])
    if not pairs.empty:  # a table per seed; with several seeds, the claims over seeds too
        table = views.paired_seed_table(pairs, records.labels)
        if pairs.seed.nunique() > 1:
            blocks["paired"] = "\n".join(f"- {line}" for line in views.paired_claims(
                pairs, records.labels, per_seed=False)) + "\n"
            blocks["paired_seeds"] = table
        else:
            blocks["paired"] = table
    if progress is not None:
        blocks["progress"] = progress(records.steps)
    return blocks
