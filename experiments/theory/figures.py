"""Figures 2 and 3 and the heat map, drawn from the frames of experiments/theory/curves.py."""

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from experiments.core.figures import new_figure
from experiments.theory.curves import curve_label
from experiments.theory.published import PAPER_QUARTER

PUBLISHED_MARKER = {"marker": "x", "color": "red", "markersize": 8, "markeredgewidth": 1.6,
                    "linestyle": "none"}
FREQUENCY_MARKER = {"marker": "o", "color": "black", "markersize": 3.5, "linestyle": "none"}
IMPORTANCE_MARKER = {"marker": "D", "color": "black", "markerfacecolor": "none",
                     "markersize": 6, "linestyle": "none"}


def curve_styles(labels):
    """Line style and legend text per curve: a colour each in order, the paper's a = n/4
    curve grey and dashed."""
    quarter = curve_label(PAPER_QUARTER)
    styles = {label: {"color": f"C{i}", "label": label} for i, label in enumerate(labels)}
    if quarter in styles:
        styles[quarter] = {"color": "0.45", "linestyle": "--",
                           "label": f"{quarter} (the paper's 'a = n/2' curve)"}
    return styles


def draw_panel(ax, x, theory, simulation, published, styles):
    """Theory lines, simulated frequencies with their CIs (where any match was seen), and the
    paper's values, on a log-y axis."""
    for curve, line in theory.groupby("curve", sort=False):
        ax.plot(line[x], line.p, linewidth=1.6, **styles[curve])
    seen = simulation[simulation.matches > 0]
    ax.errorbar(seen[x], seen.frequency, yerr=_error_bars(seen.frequency, seen.ci_low,
                                                          seen.ci_high),
                elinewidth=1, capsize=2, zorder=4, **FREQUENCY_MARKER)
    ax.plot(published[x], published.published, zorder=3, **PUBLISHED_MARKER)
    ax.set_yscale("log")
    ax.set_ylabel("P(match)")
    ax.grid(alpha=0.3)


def _error_bars(value, low, high):
    """[below, above] for errorbar, the lower bar kept above zero on a log axis."""
    return [np.minimum(value - low, 0.999 * value), high - value]


def legend_handles(styles, markers):
    """Line handles for the curves, then marker handles for the kinds of points."""
    return ([Line2D([], [], linewidth=1.6, **style) for style in styles.values()]
            + [Line2D([], [], label=text, **style) for style, text in markers])


def figure2(cfg, level, theory, simulation, published):
    """Figure 2: P(match) vs n for binary vectors (log y)."""
    fig = new_figure(8.0, 6.0)
    ax = fig.subplots()
    styles = curve_styles(list(dict.fromkeys(theory.curve)))
    draw_panel(ax, "n", theory, simulation, published, styles)
    ax.errorbar(simulation.n, simulation.is_estimate, zorder=3, elinewidth=0.8,
                yerr=_error_bars(simulation.is_estimate, simulation.is_ci_low,
                                 simulation.is_ci_high), **IMPORTANCE_MARKER)
    ax.legend(handles=legend_handles(styles, [
        (FREQUENCY_MARKER, f"simulation: frequency of {cfg.trials:,} trials ({level:.0%} CI)"),
        (IMPORTANCE_MARKER, f"simulation: importance sampling, {cfg.importance_trials:,} paths"),
        (PUBLISHED_MARKER, "published (paper)")]), fontsize="small", loc="lower left")
    ax.set(xlabel="n (vector dimension)", ylim=(max(theory.p.min() / 10, 1e-300), 3.0),
           title=f"Binary vectors: P(overlap >= {cfg.threshold}) with a stored vector of "
                 f"{cfg.stored_active} active bits")
    return fig


def figure3(cfg, theory, simulation, published):
    """Figure 3: scalar vectors, P(match) vs n (left) and vs the input scale S (right)."""
    fig = new_figure(13.0, 5.5)
    axes = fig.subplots(1, 2)
    for ax, panel, x in zip(axes, ("left", "right"), ("n", "scale")):
        part = {name: frame[frame.panel == panel]
                for name, frame in (("t", theory), ("s", simulation), ("p", published))}
        styles = curve_styles(list(dict.fromkeys(part["t"].curve)))
        draw_panel(ax, x, part["t"], part["s"], part["p"], styles)
        ax.legend(handles=legend_handles(styles, [
            (FREQUENCY_MARKER, f"simulation: frequency of {cfg.pairs:,} pairs"),
            (PUBLISHED_MARKER, "published (paper)")]), fontsize="small",
                  loc="lower left" if panel == "left" else "lower right")
    axes[0].set(xlabel="n (vector dimension)",
                title=f"input scale S = {cfg.left.scale:g}, k_w = {cfg.weight_nonzeros}")
    axes[1].set(xlabel="S (input scale: input values ~ U(0, 2S/k_w))",
                title=f"n = {cfg.right.n}, k_w = {cfg.weight_nonzeros}")
    fig.suptitle("Scalar vectors: P(w.x >= E[w.w]/2); lines = numerical theory")
    return fig


def heatmap_figure(heatmap, binary):
    """log10 P(match) over (n, a), with the a = n/2 and a = n/4 diagonals and Figure 2's rows."""
    table = heatmap.pivot(index="a", columns="n", values="log10_p")
    ns, a_grid, z = table.columns.to_numpy(), table.index.to_numpy(), table.to_numpy()
    fig = new_figure(8.0, 6.0)
    ax = fig.subplots()
    mesh = ax.pcolormesh(ns, a_grid, z, shading="nearest", cmap="viridis",
                         norm=Normalize(np.nanmin(z), 0))
    fig.colorbar(mesh, ax=ax, label="log10 P(match)")
    contours = ax.contour(ns, a_grid, z, levels=[-16, -8, -4, -2], colors="white",
                          linewidths=0.8, linestyles="solid")
    ax.clabel(contours, fmt=lambda v: f"1e{v:.0f}", fontsize="small")
    ax.plot(ns, ns / 2, color="orange", linewidth=2, label="a = n/2 (P -> 0.58, never small)")
    ax.plot(ns, ns / 4, color="orange", linestyle="--",
            label="a = n/4 (the paper's 'a = n/2' curve)")
    ax.hlines(binary.a_values, min(binary.n_values), max(binary.n_values), colors="red",
              linewidth=1.5, label=f"a = {', '.join(map(str, binary.a_values))} over "
                                   f"Figure 2's n range")
    ax.set(xscale="log", yscale="log", xlabel="n (vector dimension)",
           ylabel="a (active bits of the random vector)", xlim=(ns.min(), ns.max()),
           title=f"P(match), s = {binary.stored_active}, theta = {binary.threshold} "
                 f"(white: a > n)")
    ax.legend(fontsize="small", loc="upper left")
    return fig


