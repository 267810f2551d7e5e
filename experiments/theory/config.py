"""The theory task's settings (configs/theory.yaml): dataclasses with the paper's defaults."""

import copy
from dataclasses import dataclass, field

from experiments.core.config import from_dict, parse_override, set_key
from experiments.theory.published import FIG3_LEFT_N, FIG3_RIGHT_S

SMOKE_OVERRIDES = {"binary.trials": 2000, "binary.importance_trials": 500, "scalar.trials": 2,
                   "heatmap.points": 40}


@dataclass
class BinaryConfig:
    """Figure 2: s stored bits, threshold theta, the curves (a fixed, or a = int(f n)), trials."""
    stored_active: int = 24  # s
    threshold: int = 12  # theta
    a_values: list[int] = field(default_factory=lambda: [64, 128, 256])
    a_fractions: list[float] = field(default_factory=lambda: [0.5])
    n_values: list[int] = field(default_factory=lambda: list(range(300, 3501, 200)))
    line_step: int = 25  # n spacing of the theory lines
    trials: int = 1_000_000  # plain Monte-Carlo trials per point
    importance_trials: int = 100_000  # importance-sampling paths per point

    def check(self):
        if not 0 < self.threshold <= self.stored_active:
            raise ValueError(f"threshold: must be in 1..stored_active ({self.stored_active}), "
                             f"got {self.threshold}")
        _check_curves(self.a_values, self.a_fractions, self.n_values, self.stored_active)
        _check_positive(self, "line_step", "trials", "importance_trials")


@dataclass
class ScalarLeftConfig:
    """Figure 3 left: P(match) vs n at one input scale S (a > n is clipped to n)."""
    n_values: list[int] = field(default_factory=lambda: list(FIG3_LEFT_N))
    a_values: list[int] = field(default_factory=lambda: [64, 128, 256])
    a_fractions: list[float] = field(default_factory=lambda: [0.5])
    scale: float = 1.0
    line_step: int = 25

    def check(self):
        _check_curves([], self.a_fractions, self.n_values, 1)
        _check_positive(self, "scale", "line_step")


@dataclass
class ScalarRightConfig:
    """Figure 3 right: P(match) vs input scale S at one n."""
    n: int = 1000
    scales: list[float] = field(default_factory=lambda: list(FIG3_RIGHT_S))
    a_values: list[int] = field(default_factory=lambda: [64, 128, 256])
    line_step: float = 0.05

    def check(self):
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales: must be a non-empty list of positive numbers, "
                             f"got {self.scales}")
        _check_positive(self, "n", "line_step")


@dataclass
class ScalarConfig:
    """Figure 3: k_w weight non-zeros; trials x weights x inputs independent pairs per point."""
    weight_nonzeros: int = 32  # k_w
    trials: int = 3000
    weights_per_trial: int = 4
    inputs_per_trial: int = 1000
    cells_per_unit: int = 1000  # grid of the numerical theory; 4x finer changes it < 1e-5
    left: ScalarLeftConfig = field(default_factory=ScalarLeftConfig)
    right: ScalarRightConfig = field(default_factory=ScalarRightConfig)

    def check(self):
        _check_positive(self, "weight_nonzeros", "trials", "weights_per_trial",
                        "inputs_per_trial", "cells_per_unit")
        if self.weight_nonzeros > min(self.left.n_values + [self.right.n]):
            raise ValueError(f"weight_nonzeros: {self.weight_nonzeros} exceeds the smallest n")

    @property
    def pairs(self):
        return self.trials * self.weights_per_trial * self.inputs_per_trial


@dataclass
class HeatmapConfig:
    """The extra figure: log P(match) over (n, a), log-spaced axes up to n_max."""
    n_min: int = 100
    n_max: int = 10_000
    points: int = 160  # grid points per axis

    def check(self):
        _check_positive(self, "n_min", "points")
        if self.n_max <= self.n_min:
            raise ValueError(f"n_max: must exceed n_min ({self.n_min}), got {self.n_max}")


@dataclass
class TheoryConfig:
    """configs/theory.yaml: the seed, the interval level and each figure's settings."""
    task: str = "theory"
    seed: int = 0
    ci_level: float = 0.95  # of every confidence interval drawn and written
    binary: BinaryConfig = field(default_factory=BinaryConfig)
    scalar: ScalarConfig = field(default_factory=ScalarConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)

    def check(self):
        if self.task != "theory":
            raise ValueError(f"task: must be 'theory', got {self.task!r}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level: must be in (0, 1), got {self.ci_level}")
        if self.heatmap.n_max < 2 * self.binary.stored_active:
            raise ValueError("heatmap.n_max: must be at least 2 * binary.stored_active")


def _check_positive(cfg, *names):
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name}: must be positive, got {getattr(cfg, name)}")


def _check_curves(a_values, a_fractions, n_values, s):
    if not n_values or min(n_values) < s:
        raise ValueError(f"n_values: must be a non-empty list of values >= {s}, got {n_values}")
    if any(not 0 < f <= 1 for f in a_fractions):
        raise ValueError(f"a_fractions: must lie in (0, 1], got {a_fractions}")
    if any(not 0 < a <= min(n_values) for a in a_values):
        raise ValueError(f"a_values: must lie in 1..min(n_values) = {min(n_values)}, "
                         f"got {a_values}")


def theory_config(raw, path, overrides=(), smoke=False):
    """The validated TheoryConfig of the mapping ``raw`` read from ``path`` (+ the smoke trial
    counts, then the ``--set`` overrides)."""
    raw = copy.deepcopy(raw)
    for key, value in (SMOKE_OVERRIDES.items() if smoke else ()):
        set_key(raw, key.split("."), value)
    for text in overrides:
        set_key(raw, *parse_override(text))
    return from_dict(TheoryConfig, raw, f"{path}: ")
