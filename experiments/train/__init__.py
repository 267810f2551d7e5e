"""Task "train": one job trains a network with a seed and sweeps the noise levels every epoch."""
