"""The paper's published numbers, read from published.yaml beside this file (the one place they
are written): Table 1, Table 2 and Figure 5B for reports, Figures 2 and 3 for the theory."""

import functools
from pathlib import Path

from experiments.core.records import load_yaml

PUBLISHED = Path(__file__).with_name("published.yaml")


@functools.lru_cache(maxsize=None)
def _load(path):
    return load_yaml(Path(path).read_text())


def published(section=None, path=PUBLISHED):
    """The whole published.yaml mapping, or one ``section`` of it (e.g. "mnist", "figure2")."""
    data = _load(str(path))
    return data if section is None else data[section]
