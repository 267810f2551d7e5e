"""AutoAttack's standard version (Croce & Hein, 2020) through pyautoattack, pinned in
requirements-attacks.txt and optional: without it the study runs and says so.

pyautoattack 0.2.0 is a repackaged fork of the authors' auto-attack code (the package that
RobustBench depends on), not RobustBench's own code. Its ``version="standard"`` attack objects
are used as they come (APGD-CE: 100 steps, 1 restart; APGD-T: 9 target classes; FAB-T: 9
targets, 1 restart; Square: 5,000 queries, p_init 0.8), in the standard order, each on the
images still classified correctly, exactly as ``run_standard_evaluation`` chains them, with two
differences in bookkeeping only:

- FAB-T with one restart starts at x, draws no random numbers and never reads eps (eps only
  decides afterwards whether the example it found counts), so it runs once per image for
  every eps: its closest misclassified example over the 9 targets, whose L-inf distance is
  also the study's minimum-norm distance. At eps it fools exactly the images whose distance is
  <= eps, as the standard chain would.
- which attack fooled each image is kept, and the library's warnings (its checks for
  randomised, dynamic or probability outputs, zero gradients, and "Square Attack has decreased
  the robust accuracy...", by its own rule ``checks.check_square_sr``) are recorded.
"""

import importlib.util
import logging
import math
from contextlib import contextmanager

import torch

from experiments.robust.checks import AUTOATTACK as STANDARD

PACKAGE = "pyautoattack"
INSTALL = "pip install -r requirements-attacks.txt"
MISSING = f"{PACKAGE} is not installed"
LOGGER = "auto-attack"  # the logger pyautoattack writes its warnings to


def installed():
    return importlib.util.find_spec(PACKAGE) is not None


@contextmanager
def warnings_kept(found):
    """Collect the library's warnings into the list ``found`` (not printed)."""
    logger = logging.getLogger(LOGGER)
    handler = _ListHandler(found)
    propagate, level = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.WARNING
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = propagate, level


class _ListHandler(logging.Handler):
    def __init__(self, found):
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record):
        message = record.getMessage()
        if message not in self.found:
            self.found.append(message)


def standard(model, eps, cfg, seed, device):
    """pyautoattack's standard attack objects at ``eps`` (budgets from AutoAttackConfig
    ``cfg``: its defaults are the standard ones)."""
    from pyautoattack import AutoAttack
    attack = AutoAttack(model, version="standard", eps=eps, seed=seed, device=device)
    attack.apgd.n_iter = attack.apgd_targeted.n_iter = attack.fab.n_iter = cfg.iterations
    attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = cfg.targets
    attack.square.n_queries = cfg.queries
    return attack


def library_checks(model, x, y, cfg, batch_size):
    """The checks run_standard_evaluation makes before attacking (their warnings logged)."""
    from pyautoattack import checks
    logger = logging.getLogger(LOGGER)
    xb, yb = x[:batch_size], y[:batch_size]
    checks.check_randomized(model, xb, yb, bs=batch_size, logger=logger)
    classes = checks.check_range_output(model, xb, logger=logger)
    checks.check_dynamic(model, xb, False, logger=logger)
    checks.check_n_classes(classes, list(STANDARD), cfg.targets, cfg.targets, logger=logger)


@torch.no_grad()
def fab_t(model, x, y, cfg, seed, batch_size):
    """(closest misclassified example over FAB-T's targets (N, ...), its L-inf distance (N,),
    inf where no target gave one) for images x that are all classified correctly."""
    fab = standard(model, 1.0, cfg, seed, x.device).fab
    fab.targeted = True
    best, distance = x.clone(), torch.full((len(x),), math.inf, device=x.device)
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        for target in range(2, cfg.targets + 2):  # the 2nd..10th most likely class at x
            fab.target_class = target
            adv = fab.attack_single_run(xb, yb, use_rand_start=False, is_targeted=True)
            wrong = model(adv).argmax(1) != yb
            d = torch.where(wrong, (adv - xb).flatten(1).abs().amax(1), math.inf)
            closer = d < distance[start:start + len(xb)]
            best[start:start + len(xb)][closer] = adv[closer]
            distance[start:start + len(xb)][closer] = d[closer]
    return best, distance


def chain(model, x, y, eps, fab, cfg, seed, batch_size, total, square_queries=None):
    """AutoAttack at ``eps`` on images x (all classified correctly) out of ``total`` test
    images: (x' (N, ...), the attack that fooled each image ('' if none), robust accuracy
    over the ``total`` images after each attack, as the library reports it). Square's
    queries go to ``square_queries`` where given (the sparse engine: it only reads outputs);
    whether an image is fooled is always ``model``'s verdict."""
    attack = standard(model, eps, cfg, seed, x.device)
    if square_queries is not None:
        attack.square.predict = square_queries
    adv, robust = x.clone(), torch.ones(len(x), dtype=torch.bool, device=x.device)
    fooled_by = [""] * len(x)
    accuracy = {"clean": len(x) / total}
    for name in STANDARD:
        todo = robust.nonzero().squeeze(1)
        if len(todo):
            candidate = _run(attack, name, x[todo], y[todo], eps, fab, todo, seed, batch_size)
            wrong = model(candidate).argmax(1) != y[todo]
            adv[todo[wrong]], robust[todo[wrong]] = candidate[wrong], False
            for i in todo[wrong].tolist():
                fooled_by[i] = name
        accuracy[name] = int(robust.sum()) / total
    from pyautoattack import checks
    checks.check_square_sr(accuracy, logger=logging.getLogger(LOGGER))
    return adv, fooled_by, accuracy


def _run(attack, name, x, y, eps, fab, todo, seed, batch_size):
    """x' of one standard attack on images x (indices ``todo`` of the chain's images)."""
    if name == "fab-t":
        best, distance = fab
        return torch.where((distance[todo] <= eps).view(-1, 1, 1, 1), best[todo], x)
    runner = {"apgd-ce": attack.apgd, "apgd-t": attack.apgd_targeted,
              "square": attack.square}[name]
    runner.seed = seed
    if name == "apgd-ce":
        runner.loss = "ce"
    with torch.random.fork_rng(devices=[]):  # the library reseeds the global generator
        return torch.cat([runner.perturb(x[i:i + batch_size], y[i:i + batch_size])
                          for i in range(0, len(x), batch_size)])
