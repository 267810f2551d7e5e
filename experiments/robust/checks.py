"""The adversarial study's sanity checks, as pure functions of its records (pandas, no torch).

``images`` has one row per (network, seed, step, eps, image) with ``correct`` (0/1) and the
step's ``role`` and ``method``; ``steps`` one row per step (``results`` as in metrics.jsonl).
Each check yields Check rows, one per network, that the report writes as PASS / FAIL lines:

    iterative <= single-step    the strongest PGD's accuracy <= FGSM's, at every eps
    monotone in eps             no attack's accuracy (nor the worst case) rises with eps
    eps = 1 gives 0%            every PGD attack fools every image when the ball is the box
    converged                   PGD with more steps within 1 point of the study's PGD
    white-box <= transfer       no image survives every white-box attack but falls to transfer
    white-box <= gradient-free  ... or to the Square attack (else: gradient masking)
    non-zero gradients          no clean image whose input gradient is exactly zero
    within the threat model     every recorded x' within eps of x
    harness <= AutoAttack       no image that pyautoattack fools survives the study's attacks
"""

from dataclasses import dataclass

import pandas as pd

FULL_BOX = 1.0  # at this eps the ball holds the whole box: the job runs every PGD here too
CONVERGED_POINTS = 1.0  # allowed gap between PGD and PGD with more steps, in accuracy points
WHITE_BOX = ("fgsm", "pgd")
KEYS = ["network", "seed", "eps", "image"]


@dataclass
class Check:
    check: str
    network: str
    passed: bool
    detail: str


def worst(rows):
    """Per (network, seed, eps, image): 1 if correct under every attack in ``rows``."""
    return rows.groupby(KEYS).correct.min()


def attack_rows(images):
    """The rows of the attacks in the worst case, at the table's eps (not eps = 1)."""
    return images[(images.role == "attack") & (images.eps < FULL_BOX)]


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


def zero_gradients(images):
    clean = images[images.role == "clean"]
    for network, g in clean.groupby("network"):
        ce, margin = int(g.zero_grad_ce.sum()), int(g.zero_grad_margin.sum())
        yield Check("no exactly-zero input gradient", network, ce == margin == 0,
                    f"exactly zero at {ce} (cross-entropy) and {margin} (margin) of {len(g)} "
                    f"clean images")


def threat_model(steps):
    for network, g in steps.groupby("network"):
        results = [r for rs in g.results.dropna() for r in rs if "max_perturbation" in r]
        over = [r for r in results if r["max_perturbation"] > r["eps"]]
        largest = max((r["max_perturbation"] - r["eps"] for r in results), default=0.0)
        yield Check("every x' within eps and the [0, 1] box", network, not over,
                    f"{len(results)} (step, eps) results; largest |x' - x| - eps = {largest:.3g}")


def harness_vs_autoattack(images):
    cross = images[images.role == "crosscheck"]
    ours = worst(attack_rows(images)).rename("ours")
    for network, g in cross.groupby("network"):
        both = pd.concat([worst(g).rename("autoattack"), ours], axis=1, join="inner")
        missed = both[(both.autoattack == 0) & (both.ours == 1)]
        yield Check("harness <= AutoAttack, per image", network, missed.empty,
                    f"{len(missed)} of {len(both)} (image, eps) pairs fooled by AutoAttack "
                    f"survive every attack of the study; AutoAttack "
                    f"{_pct(both.autoattack.mean())}, ours {_pct(both.ours.mean())} there")


def all_checks(images, steps):
    """Every Check, as a DataFrame in the order of the module docstring."""
    found = [*iterative_vs_single(images), *monotone(images), *full_box(images),
             *converged(images),
             *white_box_vs(images, "transfer", "white-box <= transfer, per image"),
             *white_box_vs(images, "square", "white-box <= gradient-free, per image"),
             *zero_gradients(images), *threat_model(steps), *harness_vs_autoattack(images)]
    return pd.DataFrame([vars(c) for c in found], columns=["check", "network", "passed",
                                                           "detail"])
