"""The adversarial study's records as frames, read from the run folders alone (metrics.jsonl,
attacks/*.csv; no torch, no model). Every row carries network, label, seed and its step's
attack, role and method:

    linf         per (step, eps, image): correct; the clean step's rows (eps 0, and the zero-
                 gradient flags); AutoAttack's also fooled_by and fab_distance
    l0           per (step, pixels, image): correct; the clean rows repeated at every budget
                 (changing no pixel is within each), so a worst case over the frame is right
    distances    per (norm, image): the minimum-norm distance (linf: AutoAttack's FAB-T, l2:
                 DDN), 0 for a misclassified clean image, inf where none was found
    diagnostics  per (image, gradient): diagnostics.py's measures; curves: the loss along it
    steps        one row per step's metrics line
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from experiments.core.runs import load_runs


@dataclass
class Records:
    linf: pd.DataFrame
    steps: pd.DataFrame
    l0: Optional[pd.DataFrame] = None
    distances: Optional[pd.DataFrame] = None
    diagnostics: Optional[pd.DataFrame] = None
    curves: Optional[pd.DataFrame] = None

    @property
    def labels(self):
        """network -> label."""
        return self.linf.drop_duplicates("network").set_index("network").label


def _csv(folder, name, suffix=""):
    return pd.read_csv(Path(folder) / "attacks" / f"{name}{'-' + suffix if suffix else ''}.csv")


def _tagged(frame, record, tag):
    """Rows of one step, named by their attack (AutoAttack's per-eps steps by its entry)."""
    return frame.assign(attack=record.get("base", record["attack"]), role=record["role"],
                        method=record["method"], surrogate=record.get("surrogate"),
                        eot=record.get("eot", 0), **tag)


def _run_frames(folder, records, tag):
    """{frame name: [frames]} of one run folder."""
    parts = {"linf": [], "l0": [], "distances": [], "diagnostics": [], "curves": []}
    fab_taken = False
    for r in records:
        if "skipped" in r:
            continue
        rows = _tagged(_csv(folder, r["attack"]), r, tag)
        if r["method"] == "diagnostics":
            parts["diagnostics"].append(rows)
            parts["curves"].append(_tagged(_csv(folder, r["attack"], "curves"), r, tag))
        elif r["method"] == "ddn":
            parts["distances"].append(rows.assign(norm="l2"))
        elif r.get("threat") == "l0":
            parts["l0"].append(rows)
        else:
            parts["linf"].append(rows)
        if r["method"] == "autoattack" and not fab_taken:  # the same at every eps: once
            fab_taken = True
            parts["distances"].append(rows.drop(columns=["eps", "correct", "fooled_by"])
                                      .rename(columns={"fab_distance": "distance"})
                                      .assign(norm="linf"))
    return parts


def load_records(exp_dir):
    """The Records of an adversarial experiment, or None before any network was attacked."""
    parts, steps = {}, []
    for run in load_runs(exp_dir):
        clean = [r for r in run.records if r["attack"] == "clean"]
        if not clean:
            continue
        tag = {"network": run.network, "label": clean[0]["label"], "seed": run.seed}
        steps += [{**tag, **r} for r in run.records]
        for name, frames in _run_frames(Path(exp_dir) / run.network / f"seed-{run.seed}",
                                        run.records, tag).items():
            parts.setdefault(name, []).extend(frames)
    if not parts.get("linf"):
        return None
    frames = {k: pd.concat(v, ignore_index=True) if v else None for k, v in parts.items()}
    linf = frames["linf"]
    if "fooled_by" in linf:
        linf["fooled_by"] = linf.fooled_by.fillna("")
    steps = pd.DataFrame(steps)
    for column, default in (("threat", "linf"), ("skipped", None), ("eot", 0)):
        if column not in steps:
            steps[column] = default
    steps["threat"] = steps.threat.fillna("linf")
    return Records(linf=linf, steps=steps,
                   l0=_with_clean(frames["l0"], linf), distances=frames["distances"],
                   diagnostics=frames["diagnostics"], curves=frames["curves"])


def _with_clean(l0, linf):
    """The L0 rows and, at each budget, the clean rows of the same runs."""
    if l0 is None:
        return None
    clean = linf[linf.role == "clean"].drop(columns=["eps"], errors="ignore")
    budgets = l0[["network", "seed", "pixels"]].drop_duplicates()
    repeated = clean.merge(budgets, on=["network", "seed"])
    return pd.concat([l0, repeated[[c for c in repeated if c in l0 or c == "pixels"]]],
                     ignore_index=True)
