"""One analysis job: a trained network (network, seed) looked at on the test set.

It writes, in its run folder (besides the run-folder files of experiments/core/runs.py):
    units.csv     per layer and unit: weight norm (and as training started it), non-zero
                  fan-in, training duty cycle, the layer's k and n, the rate at which the unit
                  wins on the clean test set, and the angle (degrees) between its weights and
                  its inputs: mean, min, max over all inputs and over the inputs where it wins
    overlap.csv   per layer and noise level: winner overlap with the clean input, the share of
                  samples that keep at least half of their clean winners, the relative change
                  of the layer's output, and two chance levels for unrelated inputs: uniform
                  random winner sets (section 3), and real ones: each clean test image's
                  winners against those of the next test image of another digit, and of the
                  same digit, in its batch; for the output layer the share of samples whose
                  prediction stays the same
metrics.jsonl holds one line (label, where the weights came from, seconds); a finished job is
skipped when the suite reruns.
"""

import math
import time

import pandas as pd
import torch
from tqdm.auto import tqdm

from data import dataset_info, load_dataset
from experiments.analysis.measures import (UnitStats, chance_match_probability, cosines,
                                           degrees, partner_overlap, relative_change,
                                           unit_norms, winner_overlap)
from experiments.analysis.probe import layers_of, run_layers
from experiments.core.lifecycle import open_run
from experiments.core.records import atomic_write
from experiments.core.trained import initial_network, load_network

NOISE_SEED_OFFSET = 104_729  # the analysis draws its own noise, apart from training's


def weight_rows(net, initial):
    """Per layer and unit: weight norm (now and as training started it, from ``initial``, the
    untrained network of the same seed), non-zero fan-in, training duty cycle, and the
    layer's training k of n (k-winners)."""
    rows = []
    for layer, start in zip(layers_of(net), layers_of(initial)):
        norms, fan_in = unit_norms(layer.weights.weight)
        initial_norms, _ = unit_norms(start.weights.weight)
        duty = getattr(layer.activation, "duty_cycle", None)
        k, n = (getattr(layer.activation, "k", None), getattr(layer.activation, "n", None))
        for unit in range(len(norms)):
            rows.append({"layer": layer.name, "kind": layer.kind, "unit": unit,
                         "weight_norm": float(norms[unit]),
                         "initial_weight_norm": float(initial_norms[unit]),
                         "fan_in": int(fan_in[unit]),
                         "fan_in_total": layer.weights.weight[0].numel(),
                         "duty_cycle": math.nan if duty is None else float(duty[unit]),
                         "k": math.nan if k is None else k, "n": math.nan if n is None else n})
    return rows


class Tally:
    """Everything the pass over the test set accumulates, per layer."""

    def __init__(self, net, levels):
        self.layers = layers_of(net)
        self.levels = levels
        units = {layer.name: layer.weights.weight.shape[0] for layer in self.layers}
        self.angles = {(name, subset): UnitStats(n) for name, n in units.items()
                       for subset in ("all", "winners")}
        self.wins = {name: torch.zeros(n, dtype=torch.float64) for name, n in units.items()}
        self.inputs = dict.fromkeys(units, 0)  # (sample, position) pairs seen per unit
        self.space = {}  # layer -> n of its winner masks: C*H*W for a conv, else the units
        self.per_sample = {}  # (layer, level) -> lists of overlap, change, clean winner count
        self.unrelated = {}  # (layer, "other" | "same") -> overlaps with a partner test image
        self.samples = 0

    def add_clean(self, seen, labels):
        """Angles, win counts and the overlaps with unrelated inputs of one clean batch."""
        for layer in self.layers:
            s = seen[layer.name]
            norms = layer.weights.weight.detach().flatten(1).norm(dim=1)
            input_norms = (s.patch_norms if s.patch_norms is not None
                           else s.input.flatten(1).norm(dim=1, keepdim=True))
            angle = _per_unit(degrees(cosines(s.dots, _as_units(norms, s.dots), input_norms)))
            self.angles[(layer.name, "all")].add(angle)
            self.inputs[layer.name] += angle.shape[0]
            if s.winners is not None:
                winners = _per_unit(s.winners)
                self.angles[(layer.name, "winners")].add(angle, winners)
                self.wins[layer.name] += winners.double().sum(0)
                self.space[layer.name] = s.winners[0].numel()
                for digit, same in (("other", False), ("same", True)):
                    self.unrelated.setdefault((layer.name, digit), []).append(
                        partner_overlap(s.winners.flatten(1), labels, same))
        self.samples += len(seen[self.layers[0].name].output)

    def add_noisy(self, clean, noisy, level):
        """Winner overlap and output change of one batch at one noise level."""
        for layer in self.layers:
            c, n = clean[layer.name], noisy[layer.name]
            lists = self.per_sample.setdefault((layer.name, level), ([], [], []))
            lists[1].append(relative_change(c.output, n.output))
            if c.winners is not None:
                lists[0].append(winner_overlap(c.winners.flatten(1), n.winners.flatten(1)))
                lists[2].append(c.winners.flatten(1).sum(1).double())
            else:  # the output layer: whether the predicted class stays the same
                lists[0].append((c.output.argmax(1) == n.output.argmax(1)).double())


def _as_units(norms, dots):
    """Weight norms shaped to broadcast against ``dots`` (B, units[, h, w])."""
    return norms.view(1, -1, *([1] * (dots.dim() - 2)))


def _per_unit(values):
    """(B, units[, h, w]) -> (B * h * w, units): every input a unit received, one row each."""
    if values.dim() == 2:
        return values
    return values.movedim(1, -1).reshape(-1, values.shape[1])


def test_pass(net, cfg, seed, progress):
    """One pass over the clean and noisy test sets; returns the Tally."""
    dataset = load_dataset(cfg.data)
    clean_x, clean_y = dataset.test_set()
    generator = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
    noisy = {v: dataset.noisy_test_set(v, generator)[0] for v in cfg.levels if v > 0}
    tally = Tally(net, cfg.levels)
    starts = range(0, len(clean_x), cfg.batch_size)
    for start in tqdm(starts, desc="test inputs", unit="batch", disable=not progress,
                      leave=False):
        batch = slice(start, start + cfg.batch_size)
        clean = run_layers(net, clean_x[batch])
        tally.add_clean(clean, clean_y[batch])
        tally.add_noisy(clean, clean, 0.0)
        for level, x in noisy.items():
            tally.add_noisy(clean, run_layers(net, x[batch]), level)
    return tally


def unit_rows(net, initial, tally):
    """units.csv: weight_rows joined with the test-set win rates and angle statistics."""
    rows = weight_rows(net, initial)
    for row in rows:
        name, unit = row["layer"], row["unit"]
        row["test_win_rate"] = (float(tally.wins[name][unit] / tally.inputs[name])
                                if name in tally.space else math.nan)
        for subset in ("all", "winners"):
            stats = tally.angles[(name, subset)]
            seen = bool(stats.count[unit])
            row[f"angle_{subset}_mean"] = float(stats.mean()[unit])
            row[f"angle_{subset}_min"] = float(stats.min[unit]) if seen else math.nan
            row[f"angle_{subset}_max"] = float(stats.max[unit]) if seen else math.nan
    return rows


def overlap_rows(tally):
    """overlap.csv: per layer and level, means over the test samples, and the chance values
    for an unrelated input: its expected overlap a / n, and the section-3 probability that it
    shares at least half of the a clean winners. The output layer: the share of samples whose
    predicted class stays the same."""
    rows = []
    for layer in tally.layers:
        for level in tally.levels:
            overlap, change, size = (torch.cat(v) if v else torch.empty(0)
                                     for v in tally.per_sample[(layer.name, level)])
            row = {"layer": layer.name, "kind": layer.kind, "level": level,
                   "relative_change": float(change.nanmean())}
            if layer.kind == "output":
                row["prediction_kept"] = float(overlap.mean())
            else:
                n, a = tally.space[layer.name], float(size.mean())
                row.update(overlap=float(overlap.nanmean()),
                           match_fraction=float((overlap >= 0.5).double().mean()),
                           winners=a, space=n, chance_overlap=a / n,
                           chance_match=chance_match_probability(n, round(a), math.ceil(a / 2)))
                for digit in ("other", "same"):
                    partner = torch.cat(tally.unrelated[(layer.name, digit)])
                    row[f"{digit}_digit_overlap"] = float(partner.nanmean())
                    row[f"{digit}_digit_match"] = float((partner >= 0.5).double().mean())
            rows.append(row)
    return rows


def run_job(cfg, network, seed, folder, progress=True):
    """Analyse the trained ``network`` of ``seed``; return the run's records."""
    with open_run(folder, cfg, network, seed, dataset_info(cfg.data)) as run:
        if run.finished:
            return run.records
        t0 = time.perf_counter()
        net, label, origin = load_network(cfg, network, seed)
        run.start(cfg.device, 0, 1)
        tally = test_pass(net, cfg, seed, progress)
        initial = initial_network(cfg, network, seed)
        atomic_write(run.folder / "units.csv",
                     pd.DataFrame(unit_rows(net, initial, tally)).to_csv(index=False))
        atomic_write(run.folder / "overlap.csv",
                     pd.DataFrame(overlap_rows(tally)).to_csv(index=False))
        run.keep([])
        run.add({"label": cfg.label or label, "weights": origin, "test_inputs": tally.samples,
                 "seconds": time.perf_counter() - t0})
    return run.records


def summary(network, seed, records):
    return f"{network} seed {seed}: analysed ({records[-1]['seconds']:.0f} s)"
