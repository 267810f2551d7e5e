"""The adversarial study's worst case and sanity checks, pure functions of its records (pandas,
no torch). ``records`` (adversarial_report.Records) holds a frame per threat model: ``linf``
one row per (network, seed, step, eps, image) with ``correct`` (0/1) and the step's ``role``
and ``method``; ``l0`` the same per pixel budget; ``diagnostics`` per image and gradient;
``steps`` one row per step (``results`` as in metrics.jsonl). The worst case of a threat model
is, per image and budget, the minimum of ``correct`` over every attack row present (roles
attack and convergence: AutoAttack and the runs with more steps included). Each check yields
Check rows, one per network, that the report writes as PASS / FAIL lines:

    iterative <= single-step    the strongest PGD's accuracy <= FGSM's, at every eps
    monotone in eps             no attack's accuracy (nor the worst case) rises with eps
    eps = 1 gives 0%            every PGD attack fools every image when the ball is the box
    converged                   PGD with more steps within 1 point of the study's PGD
    white-box <= transfer       no image survives every white-box attack but falls to transfer
    white-box <= gradient-free  ... or to our Square attack (else: gradient masking)
    gradients <= AutoAttack's   ... or to AutoAttack's 5,000-query Square, which runs on what
      Square                    APGD-CE, APGD-T and FAB-T left (the library's own warning)
    AutoAttack warnings         pyautoattack raised none (its checks and its Square rule)
    non-zero gradients          no clean image whose input gradient is exactly zero
    aligned with finite         the median cosine between the network's own gradient and the
      differences               finite-difference gradient >= 0.5 at every step h
    loss rises along the        at most 5% of the images where the loss never rises along
      gradient                  sign(g) (flat) ... (on the diagnosed images)
    smooth along the gradient   ... or zigzags, total variation > 2 x its range (jagged)
    within the threat model     every recorded x' within eps of x, or within t pixels
    L0 attack <= random pixels  no image that the paper's random pixels fool survives the L0
                                attack with as many pixels
"""

from dataclasses import dataclass

import pandas as pd

FULL_BOX = 1.0  # at this eps the ball holds the whole box: the job runs every PGD here too
CONVERGED_POINTS = 1.0  # allowed gap between PGD and PGD with more steps, in accuracy points
WHITE_BOX = ("fgsm", "pgd")
WORST_ROLES = ("attack", "convergence")  # the rows the worst case is the minimum over
AUTOATTACK = ("apgd-ce", "apgd-t", "fab-t", "square")  # its standard version, in its order
ALIGNED = 0.5  # the median cosine with finite differences below which a gradient is suspect
FLAT_OR_JAGGED = 0.05  # the share of diagnosed images allowed a flat or jagged loss curve
JAGGED = 2.0  # a curve is jagged when its total variation exceeds this many times its range
KEYS = ["network", "seed", "eps", "image"]
NOT_ITS_KIND = "no k-winners layer: its gradient is the network's own"  # a step's skip reason
L0_KEYS = ["network", "seed", "pixels", "image"]


@dataclass
class Check:
    check: str
    network: str
    passed: bool
    detail: str


def worst(rows, keys=KEYS):
    """Per (network, seed, budget, image): 1 if correct under every attack in ``rows``."""
    return rows.groupby(keys).correct.min()


def attack_rows(images):
    """The rows of every attack in the worst case, at the table's eps (not eps = 1)."""
    return images[images.role.isin(WORST_ROLES) & (images.eps < FULL_BOX)]


def l0_worst(l0):
    """The L0 worst case per (network, seed, pixels, image): the clean image (no pixel
    changed is within every budget) and every L0 row, attack or random."""
    return worst(l0, L0_KEYS)


def accuracy(rows, by):
    return rows.groupby(by).correct.mean()


def _pct(v):
    return f"{100 * v:.1f}%"


def iterative_vs_single(images):
    rows = attack_rows(images)
    for network, g in rows.groupby("network"):
        if not {"fgsm", "pgd"} <= set(g.method):
            continue
        per = g.groupby(["method", "attack", "eps"]).correct.mean()
        pgd = per.loc["pgd"].groupby(level="eps").min()
        fgsm = per.loc["fgsm"].groupby(level="eps").min()
        bad = [f"eps {e:g}: PGD {_pct(pgd[e])} > FGSM {_pct(fgsm[e])}"
               for e in pgd.index if pgd[e] > fgsm[e]]
        yield Check("iterative <= single-step", network, not bad,
                    "; ".join(bad) or "the strongest PGD <= FGSM at every eps")


def monotone(images):
    rows = attack_rows(images)
    clean = images[images.role == "clean"].groupby("network").correct.mean()
    for network, g in rows.groupby("network"):
        curves = {a: c.groupby("eps").correct.mean() for a, c in g.groupby("attack")}
        curves["worst case"] = worst(g).groupby(level="eps").mean()
        bad = []
        for attack, curve in curves.items():
            points = [(0.0, clean[network]), *curve.sort_index().items()]
            bad += [f"{attack} {_pct(a)} at eps {e0:g} -> {_pct(b)} at {e1:g}"
                    for (e0, a), (e1, b) in zip(points, points[1:]) if b > a]
        yield Check("accuracy never rises with eps", network, not bad,
                    "; ".join(bad) or f"{len(curves)} curves, from clean to the largest eps")


def full_box(images):
    rows = images[(images.role == "attack") & (images.eps == FULL_BOX)]
    for network, g in rows.groupby("network"):
        per = g.groupby("attack").correct.mean()
        bad = per[per > 0]
        yield Check("eps = 1 gives 0%", network, bad.empty,
                    ", ".join(f"{a} {_pct(v)}" for a, v in bad.items())
                    or f"{len(per)} PGD attacks at 0%")


def converged(images):
    checks = images[images.role == "convergence"]
    for network, g in checks.groupby("network"):
        bad, seen = [], []
        for name, run in g.groupby("attack"):
            base = images[(images.network == network) & (images.attack == name.split("@")[0])]
            base = base.merge(run[KEYS], on=KEYS)
            more, fewer = (r.groupby("eps").correct.agg(["sum", "count"]) for r in (run, base))
            gap = (more["sum"] - fewer["sum"]).abs()  # in images: exact, unlike accuracies
            seen.append(f"{name}: largest gap {100 * (gap / more['count']).max():.1f} points")
            bad += [f"{name} eps {e:g}: {_pct(more['sum'][e] / n)} vs "
                    f"{_pct(fewer['sum'][e] / n)}"
                    for e, n in more["count"].items() if 100 * gap[e] > CONVERGED_POINTS * n]
        yield Check(f"more PGD steps within {CONVERGED_POINTS:g} point", network, not bad,
                    "; ".join(bad) or "; ".join(seen))


def white_box_vs(images, method, title):
    rows = attack_rows(images)
    white = worst(rows[rows.method.isin(WHITE_BOX)]).rename("white")
    other = worst(rows[rows.method == method]).rename("other")
    both = pd.concat([white, other], axis=1, join="inner").reset_index()
    for network, g in both.groupby("network"):
        escaped = g[(g.white == 1) & (g.other == 0)]
        per_eps = escaped.groupby("eps").size()
        yield Check(title, network, escaped.empty,
                    (f"{len(escaped)} of {len(g)} (image, eps) pairs survive every white-box "
                     f"attack but not {method} (" + ", ".join(f"eps {e:g}: {n}" for e, n in
                                                              per_eps.items()) + ")")
                    if len(escaped) else f"no image of {len(g)} (image, eps) pairs")


def gradient_rows(rows):
    """Rows of every gradient attack: ours, and AutoAttack's with the images that only its
    Square (run last, on what APGD-CE, APGD-T and FAB-T left) fooled counted as correct."""
    ours = rows[rows.method.isin(WHITE_BOX)]
    auto = rows[rows.method == "autoattack"]
    auto = auto.assign(correct=auto.correct.where(auto.fooled_by != "square", 1))
    return pd.concat([ours, auto])


def gradients_vs_aa_square(images):
    rows = attack_rows(images)
    auto = rows[rows.method == "autoattack"]
    if auto.empty:
        return
    white = worst(gradient_rows(rows)).rename("white")
    square = auto.set_index(KEYS).fooled_by.eq("square").rename("square")
    both = pd.concat([white, square], axis=1, join="inner").reset_index()
    for network, g in both.groupby("network"):
        escaped = g[(g.white == 1) & g.square]
        per_eps = ", ".join(f"eps {e:g}: {n}" for e, n in escaped.groupby("eps").size().items())
        yield Check("gradients <= AutoAttack's Square, per image", network, escaped.empty,
                    f"{len(escaped)} of {len(g)} (image, eps) pairs survive every gradient "
                    f"attack but fall to AutoAttack's Square" + (f" ({per_eps})" if per_eps
                                                                  else ""))


def autoattack_warnings(steps):
    auto = steps[steps.method == "autoattack"]
    auto = auto[auto.skipped.isna()] if "skipped" in auto else auto
    for network, g in auto.groupby("network"):
        found = [f"eps {r['eps']:g}: {w}" for rs in g.results for r in rs
                 for w in r.get("warnings", [])]
        yield Check("AutoAttack raised no warning", network, not found,
                    "; ".join(dict.fromkeys(found)) or "none, at any eps")


def diagnostics_checks(diagnostics):
    if diagnostics is None:
        return
    own = diagnostics[diagnostics.gradient == "own"]
    cosines = [c for c in own if c.startswith("fd_cos@")]
    for network, g in own.groupby("network"):
        medians = {c.split("@")[1]: g[c].median() for c in cosines}
        yield Check("own gradient aligned with finite differences", network,
                    all(m >= ALIGNED for m in medians.values()),
                    ", ".join(f"median cosine {m:.2f} at h = {h}" for h, m in medians.items())
                    + f" (threshold {ALIGNED:g}; {len(g)} images)")
        flat, jagged = (g.rise <= 0).mean(), (g.roughness > JAGGED).mean()
        yield Check("loss rises along the own gradient", network, flat <= FLAT_OR_JAGGED,
                    f"flat on {_pct(flat)} of {len(g)} images (allowed "
                    f"{_pct(FLAT_OR_JAGGED)})")
        yield Check("loss smooth along the own gradient", network, jagged <= FLAT_OR_JAGGED,
                    f"jagged (total variation > {JAGGED:g} x range) on {_pct(jagged)} of "
                    f"{len(g)} images (allowed {_pct(FLAT_OR_JAGGED)})")


def l0_vs_random(l0):
    if l0 is None:
        return
    attacked = worst(l0[l0.method == "sparse_rs"], L0_KEYS).rename("attack")
    noise = worst(l0[l0.method == "random_pixels"], L0_KEYS).rename("random")
    both = pd.concat([attacked, noise], axis=1, join="inner").reset_index()
    for network, g in both.groupby("network"):
        missed = g[(g.attack == 1) & (g.random == 0)]
        yield Check("L0 attack <= random pixels, per image", network, missed.empty,
                    f"{len(missed)} of {len(g)} (image, budget) pairs fooled by random pixels "
                    f"survive the L0 attack")


def zero_gradients(images):
    clean = images[images.role == "clean"]
    for network, g in clean.groupby("network"):
        ce, margin = int(g.zero_grad_ce.sum()), int(g.zero_grad_margin.sum())
        yield Check("no exactly-zero input gradient", network, ce == margin == 0,
                    f"exactly zero at {ce} (cross-entropy) and {margin} (margin) of {len(g)} "
                    f"clean images")


def threat_model(steps):
    for network, g in steps.groupby("network"):
        results = [r for rs in g.results.dropna() for r in rs]
        linf = [r for r in results if "max_perturbation" in r]
        l0 = [r for r in results if "max_changed" in r]
        over = ([r for r in linf if r["max_perturbation"] > r["eps"]]
                + [r for r in l0 if r["max_changed"] > r["pixels"]])
        largest = max((r["max_perturbation"] - r["eps"] for r in linf), default=0.0)
        yield Check("every x' within its threat model and the [0, 1] box", network, not over,
                    f"{len(linf)} L-inf (step, eps) results, largest |x' - x| - eps = "
                    f"{largest:.3g}; {len(l0)} L0 results within their pixel budgets"
                    if not over else f"{len(over)} results outside")


def all_checks(records):
    """Every Check, as a DataFrame in the order of the module docstring."""
    images, steps = records.linf, records.steps
    found = [*iterative_vs_single(images), *monotone(images), *full_box(images),
             *converged(images),
             *white_box_vs(images, "transfer", "white-box <= transfer, per image"),
             *white_box_vs(images, "square", "white-box <= gradient-free, per image"),
             *gradients_vs_aa_square(images), *autoattack_warnings(steps),
             *zero_gradients(images), *diagnostics_checks(records.diagnostics),
             *threat_model(steps), *l0_vs_random(records.l0)]
    return pd.DataFrame([vars(c) for c in found], columns=["check", "network", "passed",
                                                           "detail"])
