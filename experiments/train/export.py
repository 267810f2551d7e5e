"""Ship trained runs as compact weights: the last epoch of each run folder, to models/pretrained/.

    python -m experiments.train.export results/reference/mnist_table1/*/seed-42

Each network becomes models/pretrained/<network>.pt (see models/pretrained.py), with the run
folder (relative to the repository), seed, last epoch, git commits and that epoch's record, so
that a test can reproduce the recorded scores from the shipped weights.
"""

import argparse
import json
from pathlib import Path

import torch

from experiments.core.config import from_dict
from experiments.core.records import REPO, load_yaml, read_jsonl
from experiments.train.config import JobConfig
from models import build_network
from models.pretrained import FOLDER, save_pretrained


def export(run_dir, folder=FOLDER):
    """Write ``run_dir``'s last epoch to ``folder``/<network>.pt; return the path."""
    run_dir = Path(run_dir).resolve()
    resolved = load_yaml((run_dir / "config.yaml").read_text())
    network, seed = resolved.pop("network"), resolved.pop("seed")
    job = from_dict(JobConfig, resolved, f"{run_dir}/config.yaml")
    checkpoint = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    records = read_jsonl(run_dir / "metrics.jsonl")
    if not (run_dir / "done").is_file() or checkpoint["epochs_finished"] != len(records):
        raise SystemExit(f"{run_dir}: not a finished run with its last checkpoint")
    torch.manual_seed(seed)
    model = build_network(job.model)
    model.load_state_dict(checkpoint["model"])
    sessions = json.loads((run_dir / "provenance.json").read_text())["sessions"]
    info = {"network": network, "label": job.label, "seed": seed, "epoch": records[-1]["epoch"],
            "run": str(run_dir.relative_to(REPO)), "record": records[-1],
            "git_commits": sorted({s["git_commit"] for s in sessions}),
            "test_batch_size": job.train.test_batch_size, "noise_levels": job.noise.levels}
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(folder) / f"{network}.pt"
    save_pretrained(model, job.model, path, info)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished run folders <exp>/<network>/seed-<s>")
    for run_dir in parser.parse_args().runs:
        path = export(run_dir)
        print(f"{run_dir} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
