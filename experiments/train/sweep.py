"""The noise sweep: clean and noisy test sets built once per run, scored after every epoch.

The noisy copies of the test set are drawn once, from a generator seeded by the run's seed,
and kept in memory (MNIST: 11 x 10,000 images, 345 MB), so a sweep after each epoch costs
just one evaluation pass per level and every epoch (and a resumed run) sees the same noise.
``noise_score`` = correct classifications summed over all levels, level 0 (clean) included.
With held-out training images (``data.validation`` > 0) the sweep also scores them, clean,
for the ``valid`` model selection (experiments/core/selection.py).
"""

import torch

from experiments.train.loop import count_correct, evaluation_model

NOISE_SEED_OFFSET = 7_919  # keeps the noise stream apart from the training streams
VALIDATION = "validation"


def level_key(level):
    """The JSON key of a noise level: '0.05'."""
    return f"{level:.2f}"


class NoiseSweep:
    def __init__(self, dataset, levels, seed, device, validation=False):
        generator = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
        self.sets = {}
        for level in levels:
            x, y = (dataset.test_set() if level == 0
                    else dataset.noisy_test_set(level, generator))
            self.sets[level_key(level)] = (x.to(device), y.to(device))
        self.num_test = len(next(iter(self.sets.values()))[1])
        self.validation = None
        if validation:
            x, y = dataset.validation_set()
            self.validation = (x.to(device), y.to(device))

    def run(self, model, batch_size, device, engine="plain"):
        """{level key: number correct} for every level (and VALIDATION: the held-out images),
        evaluated by ``engine`` (a job's eval.engine: experiments.train.loop.ENGINES)."""
        sets = dict(self.sets)
        if self.validation is not None:
            sets[VALIDATION] = self.validation
        model = evaluation_model(model, engine)
        return {key: count_correct(model, x, y, batch_size, device)
                for key, (x, y) in sets.items()}

    def record(self, correct):
        """Metrics fields for one sweep's counts (accuracies in %)."""
        correct = dict(correct)
        held_out = correct.pop(VALIDATION, None)
        accuracy = {k: 100.0 * c / self.num_test for k, c in correct.items()}
        record = {"test_accuracy": accuracy[level_key(0.0)], "num_test": self.num_test,
                  "noise_accuracy": accuracy, "noise_correct": correct,
                  "noise_score": sum(correct.values())}
        if held_out is not None:
            size = len(self.validation[1])
            record.update(validation_accuracy=100.0 * held_out / size,
                          validation_correct=held_out, num_validation=size)
        return record
