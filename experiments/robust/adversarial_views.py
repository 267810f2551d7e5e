"""Tables and figures of the adversarial study beyond L-inf accuracy, from its Records alone
(adversarial_records.py; no torch):

    l0.md, .csv, l0_curves.png, .csv        per network and pixel budget t: the paper's random
                                            pixels against the worst case over the L0 attacks
    min_norm.md, .csv, min_norm_curves.png  per network: the median minimum-norm distance
                                            (L-inf: FAB-T, L2: DDN) and the accuracy against
                                            the radius
    diagnostics.md, .csv,                   per network and gradient: the gradient-masking
      loss_along_gradient.png               measures (diagnostics.py), and the margin loss
                                            along sign(g)
    paired.md, .csv                         per compared pair, threat, budget and seed:
                                            McNemar on the worst case of the same images; with
                                            several seeds also the paired test over seeds

With several seeds the images of all seeds are pooled, except in paired.md.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from experiments.core.figures import new_figure, series_colors
from experiments.core.intervals import clopper_pearson
from experiments.core.stats import McNemar, claim, mcnemar, mcnemar_claim, paired
from experiments.robust.checks import JAGGED, NOT_ITS_KIND, attack_rows, l0_worst, worst

MNIST_PIXELS = 784


def _accuracy(frame, by):
    out = frame.groupby(by, sort=False).correct.agg(["sum", "count"]).reset_index()
    lo, hi = clopper_pearson(out["sum"], out["count"])
    return out.assign(accuracy=out["sum"] / out["count"], lo=lo, hi=hi)


def _grid(count, cols=4, width=3.6, height=3.0):
    rows = math.ceil(count / cols)
    fig = new_figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax in axes[count:]:
        ax.axis("off")
    return fig, axes


# ---------------------------------------------------------------- L0

def l0_frame(records):
    """Per (network, pixels): the accuracy under random pixels and the L0 worst case."""
    l0 = records.l0
    noise = _accuracy(l0[l0.method == "random_pixels"], ["network", "pixels"]).assign(
        curve="random pixels")
    worst_case = _accuracy(l0_worst(l0).reset_index(), ["network", "pixels"]).assign(
        curve="worst case")
    frame = pd.concat([noise, worst_case], ignore_index=True)
    frame["label"] = frame.network.map(records.labels)
    return frame.rename(columns={"sum": "correct", "count": "images"})


def l0_markdown(frame):
    """A row per network and curve, a column per pixel budget: accuracy %."""
    table = frame.pivot_table(index=["label", "curve"], columns="pixels", values="accuracy",
                              sort=False)
    table.columns = [f"{p} px ({100 * p / MNIST_PIXELS:.0f}%)" if p >= 39 else f"{p} px"
                     for p in table.columns]
    return (100 * table).map(lambda v: f"{v:.1f}").reset_index().rename(
        columns={"label": "network"})


def l0_figure(frame, clean):
    """A panel per network: accuracy against pixels changed, random and worst case."""
    networks = list(dict.fromkeys(frame.network))
    fig, axes = _grid(len(networks))
    for ax, network in zip(axes, networks):
        part = frame[frame.network == network]
        for curve, style in (("random pixels", "--"), ("worst case", "-")):
            g = part[part.curve == curve].sort_values("pixels")
            xs, ys = [0, *g.pixels], [100 * clean[network], *(100 * g.accuracy)]
            ax.plot(xs, ys, style, marker="o", markersize=3, label=curve)
            ax.fill_between(g.pixels, 100 * g.lo, 100 * g.hi, alpha=0.15, linewidth=0)
        ax.set_xscale("symlog", linthresh=1)
        ax.set(title=part.label.iloc[0], xlabel="pixels changed (of 784; symlog)",
               ylabel="accuracy (%)", ylim=(-2, 102))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("L0: the paper's random pixels (0.7469) against the worst case over the L0 "
                 "attacks, same images")
    return fig


# ---------------------------------------------------------------- minimum norm

def min_norm_frame(records):
    """Per (network, norm): images, median distance and its quartiles, how many found."""
    d = records.distances
    rows = []
    for (network, norm), g in d.groupby(["network", "norm"], sort=False):
        rows.append({"network": network, "label": records.labels[network], "norm": norm,
                     "attack": "FAB-T" if norm == "linf" else "DDN", "images": len(g),
                     "median": g.distance.median(), "q25": g.distance.quantile(0.25),
                     "q75": g.distance.quantile(0.75),
                     "not_found": int(np.isinf(g.distance).sum())})
    return pd.DataFrame(rows)


def min_norm_markdown(frame):
    wide = frame.pivot_table(index="label", columns="norm", values="median", sort=False)
    quart = {n: frame[frame.norm == n].set_index("label") for n in frame.norm.unique()}
    cells = {f"median {'L-inf (FAB-T)' if n == 'linf' else 'L2 (DDN)'} [quartiles]":
             [f"{q.loc[label, 'median']:.3f} [{q.loc[label, 'q25']:.3f}, "
              f"{q.loc[label, 'q75']:.3f}]" if label in q.index else "not run"
              for label in wide.index]
             for n, q in quart.items()}
    return pd.DataFrame({"network": wide.index, **cells})


def min_norm_curves(records):
    """Accuracy against radius r: the share of images whose distance exceeds r."""
    rows = []
    for (network, norm), g in records.distances.groupby(["network", "norm"], sort=False):
        top = 0.4 if norm == "linf" else 4.0
        for r in np.linspace(0, top, 81):
            rows.append({"network": network, "label": records.labels[network], "norm": norm,
                         "radius": r, "accuracy": float((g.distance > r).mean())})
    return pd.DataFrame(rows)


def min_norm_figure(curves, worst_points):
    """Two panels (L-inf, L2): accuracy against radius; the L-inf worst case as points."""
    fig = new_figure(11, 4.4)
    axes = dict(zip(("linf", "l2"), fig.subplots(1, 2)))
    colors = series_colors(dict.fromkeys(curves.network))
    for (network, norm), g in curves.groupby(["network", "norm"], sort=False):
        axes[norm].plot(g.radius, 100 * g.accuracy, color=colors[network],
                        label=g.label.iloc[0])
    for network, g in worst_points[worst_points.network.isin(colors)].groupby("network",
                                                                          sort=False):
        axes["linf"].plot(g.eps, 100 * g.correct, "o", color=colors[network], markersize=4)
    axes["linf"].set(title="L-inf: FAB-T's minimum distance (points: the worst case)",
                     xlabel="L-inf radius (pixel units)")
    axes["l2"].set(title="L2: DDN's minimum distance", xlabel="L2 radius (pixel units)")
    for ax in axes.values():
        ax.set(ylabel="images whose distance exceeds the radius (%)")
        ax.grid(alpha=0.3)
    axes["l2"].legend(fontsize="x-small")
    return fig


# ---------------------------------------------------------------- diagnostics

def diagnostics_frame(records):
    """Per (network, gradient), over the diagnosed images: the masking measures."""
    d = records.diagnostics
    cosines = [c for c in d if c.startswith("fd_cos@")]
    out = d.groupby(["network", "gradient"], sort=False).agg(
        images=("image", "size"), grad_norm=("grad_norm", "median"),
        zero=("grad_norm", lambda v: float((v == 0).mean())),
        **{c: (c, "median") for c in cosines},
        flat=("rise", lambda v: float((v <= 0).mean())),
        jagged=("roughness", lambda v: float((v > JAGGED).mean()))).reset_index()
    return out.assign(label=out.network.map(records.labels))


def diagnostics_markdown(frame):
    cosines = [c for c in frame if c.startswith("fd_cos@")]
    table = pd.DataFrame({"network": frame.label, "gradient": frame.gradient,
                          "images": frame.images,
                          "median gradient norm": frame.grad_norm.map(lambda v: f"{v:.3g}"),
                          "zero g %": (100 * frame.zero).map(lambda v: f"{v:.0f}")})
    for c in cosines:
        table[f"median cos(g, FD) h={c.split('@')[1]}"] = frame[c].map(lambda v: f"{v:.2f}")
    table["flat %"] = (100 * frame.flat).map(lambda v: f"{v:.0f}")
    table["jagged %"] = (100 * frame.jagged).map(lambda v: f"{v:.0f}")
    return table


def loss_curves(records):
    """Per (network, gradient, alpha): quartiles of L(x + a sign g) - L(x) over the images."""
    c = records.curves
    start = c[c.alpha == 0].set_index(["network", "seed", "image", "gradient"]).margin
    c = c.assign(rise=c.margin.to_numpy() - start.reindex(
        pd.MultiIndex.from_frame(c[["network", "seed", "image", "gradient"]])).to_numpy())
    out = c.groupby(["network", "gradient", "alpha"], sort=False).rise.agg(
        q25=lambda v: v.quantile(0.25), median="median",
        q75=lambda v: v.quantile(0.75)).reset_index()
    return out.assign(label=out.network.map(records.labels))


def loss_figure(curves):
    networks = list(dict.fromkeys(curves.network))
    fig, axes = _grid(len(networks))
    colors = series_colors(dict.fromkeys(curves.gradient))
    for ax, network in zip(axes, networks):
        part = curves[curves.network == network]
        for gradient, g in part.groupby("gradient", sort=False):
            ax.plot(g.alpha, g["median"], color=colors[gradient], label=gradient)
            ax.fill_between(g.alpha, g.q25, g.q75, color=colors[gradient], alpha=0.15,
                            linewidth=0)
        ax.set(title=part.label.iloc[0], xlabel="a: step along sign(g), pixel units",
               ylabel="margin loss rise L(x + a d) - L(x)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("The loss along the attack direction, median and quartiles over the "
                 "diagnosed images (flat or zigzag curves: masking)")
    return fig


# ---------------------------------------------------------------- paired comparisons

def paired_frame(records, pairs):
    """Per (pair, threat, budget, seed): McNemar on the worst case of the shared images, over
    the attacks that both networks ran (``comparable``)."""
    threats = {"linf": (attack_rows(records.linf), "eps", worst)}
    if records.l0 is not None:
        threats["l0"] = (records.l0, "pixels", l0_worst)
    rows = []
    for (a, b) in pairs:
        for threat, (frame, budget, worst_of) in threats.items():
            for seed, g in frame[frame.network.isin([a, b])].groupby("seed"):
                g = comparable(g, records.steps, a, b, seed, budget)
                if g is None:
                    continue
                w = worst_of(g).rename_axis(["network", "seed", "budget", "image"])
                both = pd.concat([w.loc[a].rename("a"), w.loc[b].rename("b")], axis=1,
                                 join="inner").reset_index()
                for budget_value, h in both.groupby("budget"):
                    m = mcnemar(h.a.to_numpy(), h.b.to_numpy())
                    rows.append({"a": a, "b": b, "threat": threat, "budget": budget_value,
                                 "seed": seed, **vars(m)})
    return pd.DataFrame(rows)


def comparable(rows, steps, a, b, seed, budget):
    """The rows of networks ``a`` and ``b`` (one seed) of the (attack, budget) pairs that both
    ran, or that one ran and the other skipped as not its kind (a surrogate gradient on a
    network without k-winners, whose own gradient it ran): a step one network has not reached
    yet does not count against the other. None without both networks."""
    if not {a, b} <= set(rows.network):
        return None
    keys = {n: set(zip(g.attack, g[budget])) for n, g in rows.groupby("network")}
    done = steps[(steps.seed == seed) & steps.network.isin([a, b])]
    not_its_kind = {n: set(g.base.fillna(g.attack)[g.skipped.fillna("") == NOT_ITS_KIND])
                    for n, g in done.groupby("network")}
    keep = keys[a] & keys[b]
    keep |= {k for k in keys[a] if k[0] in not_its_kind.get(b, set())}
    keep |= {k for k in keys[b] if k[0] in not_its_kind.get(a, set())}
    pairs = list(zip(rows.attack, rows[budget]))
    return rows[[k in keep for k in pairs]]


def paired_seed_table(frame, labels):
    """Markdown: per (pair, threat, budget), each seed's worst-case difference a - b in points
    on the same images, its 95% paired-bootstrap interval and its exact McNemar p."""
    seeds = sorted(set(frame.seed))
    lines = ["| pair | budget | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for (a, b, threat, budget), g in frame.groupby(["a", "b", "threat", "budget"], sort=False):
        by_seed = g.set_index("seed")
        cells = [f"{100 * by_seed['diff'][s]:+.1f} [{100 * by_seed['low'][s]:+.1f}, "
                 f"{100 * by_seed['high'][s]:+.1f}], p {by_seed['p'][s]:.2g}"
                 if s in by_seed.index else "-" for s in seeds]
        lines.append(f"| {labels[a]} − {labels[b]} | {budget_name(threat, budget)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def budget_name(threat, budget):
    return f"eps {budget:g}" if threat == "linf" else f"{int(budget)} pixels"


def paired_claims(frame, labels, per_seed=True):
    """One sentence per (pair, threat, budget): McNemar per seed (unless not ``per_seed``);
    over seeds, with several."""
    lines = []
    for (a, b, threat, budget), g in frame.groupby(["a", "b", "threat", "budget"], sort=False):
        subject = f"{labels[a]} − {labels[b]}"
        what = f"worst-case accuracy at {budget_name(threat, budget)} ({threat})"
        for row in (g.itertuples() if per_seed or len(g) == 1 else []):
            m = McNemar(**{k: getattr(row, k) for k in McNemar.__dataclass_fields__})
            lines.append(mcnemar_claim(subject, dataclasses.replace(m, n=int(m.n)),
                                       f"{what}, seed {row.seed}"))
        if len(g) > 1:
            lines.append(claim(subject, paired(100 * g.accuracy_a, 100 * g.accuracy_b),
                               f"{what}, in points, over seeds {', '.join(map(str, g.seed))}",
                               digits=1))
    return lines

