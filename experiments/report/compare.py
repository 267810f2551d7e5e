"""Did it reproduce? This run beside the shipped reference records and the published numbers.

Per network, at the paper's selection (best clean-test epoch per seed), for the test score and
the noise score: this run's mean ± std over its seeds, the reference records' (shipped in
results/reference/<experiment>/), and the paper's; and the differences

    vs paper      = (this - paper mean) / paper std
    ref vs paper  = (reference - paper mean) / paper std
    vs reference  = (this - reference) / paper std

all in units of the published std, so one scale reads every gap. A difference is left empty
when either side cannot be compared (a smoke run, a subset, a synthetic stand-in: the
Context's ``problem``).
"""

import numpy as np
import pandas as pd

from experiments.report.tables import mean_std_cell, results_table, seed_list

SCORES = {"test": ("test %", 2), "noise": ("noise score", 0)}


def comparison_frame(context, reference):
    """One row per network of ``context`` (this run); ``reference`` is the Context of the
    shipped records of the same experiment."""
    ours = results_table(context).set_index("network")
    ref = results_table(reference).set_index("network")
    rows = []
    for name in context.order:
        row = {"network": name, "label": context.labels[name], "seeds": ours.loc[name, "seeds"],
               "reference_seeds": ref.loc[name, "seeds"] if name in ref.index else ""}
        for score in SCORES:
            row.update(_score_columns(score, ours.loc[name], _row(ref, name), context, reference))
        rows.append(row)
    return pd.DataFrame(rows)


def _row(table, name):
    return table.loc[name] if name in table.index else None


def _score_columns(score, ours, ref, context, reference):
    paper_mean, paper_std = ours[f"paper_{score}_mean"], ours[f"paper_{score}_std"]
    this = ours[f"{score}_best_mean"], ours[f"{score}_best_std"]
    shipped = (ref[f"{score}_best_mean"], ref[f"{score}_best_std"]) if ref is not None \
        else (np.nan, np.nan)
    ok_this, ok_ref = context.problem is None, reference.problem is None

    def delta(a, b, ok):
        return (a - b) / paper_std if ok else np.nan

    return {f"{score}_mean": this[0], f"{score}_std": this[1],
            f"{score}_reference_mean": shipped[0], f"{score}_reference_std": shipped[1],
            f"{score}_paper_mean": paper_mean, f"{score}_paper_std": paper_std,
            f"{score}_vs_paper": delta(this[0], paper_mean, ok_this),
            f"{score}_reference_vs_paper": delta(shipped[0], paper_mean, ok_ref),
            f"{score}_vs_reference": delta(this[0], shipped[0], ok_this and ok_ref)}


def comparison_markdown(frame):
    """The comparison with 'mean ± std (Δ σ)' cells, for reading."""
    out = pd.DataFrame({"network": frame.label, "seeds (this run)": frame.seeds,
                        "seeds (reference)": frame.reference_seeds})
    for score, (title, digits) in SCORES.items():
        out[f"{title}: this run"] = [
            mean_std_cell(r[f"{score}_mean"], r[f"{score}_std"], digits)
            + _deltas(("paper", r[f"{score}_vs_paper"]), ("reference", r[f"{score}_vs_reference"]))
            for _, r in frame.iterrows()]
        out[f"{title}: reference"] = [
            mean_std_cell(r[f"{score}_reference_mean"], r[f"{score}_reference_std"], digits)
            + _deltas(("paper", r[f"{score}_reference_vs_paper"]))
            for _, r in frame.iterrows()]
        out[f"{title}: paper"] = [mean_std_cell(m, s, digits) for m, s in
                                  zip(frame[f"{score}_paper_mean"], frame[f"{score}_paper_std"])]
    return out


def _deltas(*pairs):
    shown = [f"{value:+.1f} σ vs {what}" for what, value in pairs if not np.isnan(value)]
    return f" ({'; '.join(shown)})" if shown else ""


def comparison_notes(context, reference):
    lines = [f"- This run: {context.subject}, seeds {seed_list(r.seed for r in context.runs)}; "
             f"reference: the shipped records, seeds "
             f"{seed_list(r.seed for r in reference.runs)}.",
             "- Scores at the paper's selection (best clean-test epoch per seed), mean ± "
             "population std over seeds; differences in units of the paper's std."]
    for who, ctx in (("this run", context), ("reference", reference)):
        if ctx.problem is not None:
            lines.append(f"- Differences for {who} left empty: {ctx.problem}.")
    return lines
