"""What one analysis job looks at: which trained network (shipped or from a run folder), on
which data and noise levels."""

from dataclasses import dataclass, field

from data import DataConfig
from data.noise import PAPER_LEVELS
from experiments.core.trained import TrainedSource, check_source

SMOKE_OVERRIDES = {"data.test_limit": 200, "levels": [0.0, 0.25, 0.5]}


@dataclass
class AnalysisConfig(TrainedSource):
    """Which trained network (TrainedSource: label, source, runs, checkpoint) on which data."""
    data: DataConfig = field(default_factory=DataConfig)
    levels: list[float] = field(default_factory=lambda: list(PAPER_LEVELS))
    batch_size: int = 500
    device: str = "cpu"

    def check(self):
        check_source(self)
        if not self.levels or self.levels[0] != 0.0 or any(not 0 <= v <= 1 for v in self.levels):
            raise ValueError(f"levels: must start with 0.0 and lie in [0, 1], got {self.levels}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
