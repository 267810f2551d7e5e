"""The paper's published Figure 2 and Figure 3 values (docs/paper_spec.md section 6), in the
shapes the theory code uses; the numbers themselves are in experiments/core/published.yaml."""

from experiments.core.published import published

_FIGURE2, _FIGURE3 = published("figure2"), published("figure3")

PAPER_QUARTER = _FIGURE2["quarter_curve"]  # the curve the paper labels "a = n/2" is a = n/4
QUARTER_NOTE = " ".join(_FIGURE2["quarter_note"].split())
PUBLISHED_FIGURE2 = _FIGURE2["curves"]  # curve (a, or a / n) -> {n: the paper's theory value}
FIG3_LEFT_N = tuple(_FIGURE3["left"]["n_values"])
FIG3_RIGHT_S = tuple(_FIGURE3["right"]["scales"])
PUBLISHED_FIGURE3_LEFT = {curve: dict(zip(FIG3_LEFT_N, values))  # S = 1: curve -> {n: value}
                          for curve, values in _FIGURE3["left"]["curves"].items()}
PUBLISHED_FIGURE3_RIGHT = {curve: dict(zip(FIG3_RIGHT_S, values))  # n = 1000: {S: value}
                           for curve, values in _FIGURE3["right"]["curves"].items()}
