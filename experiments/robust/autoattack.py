"""The cross-check with a well-kept library: pyautoattack (the AutoAttack package RobustBench
uses), pinned in requirements-attacks.txt and optional: without it the study runs and says so.

pyautoattack 0.2.0's API differs from upstream AutoAttack: ``attacks=`` with ``version="custom"``,
and ``run_standard_evaluation`` returns (x_adv, y_adv). It runs its attacks in turn (APGD-CE,
APGD-T, Square), each on the images that are still classified correctly, and returns the
original image for those that were misclassified from the start.
"""

import importlib.util

import torch

PACKAGE = "pyautoattack"
INSTALL = "pip install -r requirements-attacks.txt"
MISSING = f"{PACKAGE} is not installed"


def installed():
    return importlib.util.find_spec(PACKAGE) is not None


def autoattack(model, x, y, eps, cfg, seed, batch_size):
    """x' of pyautoattack's ``cfg.attacks`` (an AutoAttackConfig) at ``eps``; the global RNG,
    which pyautoattack reseeds, is left as it was."""
    from pyautoattack import AutoAttack
    attack = AutoAttack(model, attacks=list(cfg.attacks), version="custom", eps=eps, seed=seed,
                        device=x.device)
    attack.apgd.n_restarts = 1
    attack.apgd.n_iter = attack.apgd_targeted.n_iter = cfg.iterations
    attack.apgd_targeted.n_target_classes = cfg.targets
    attack.square.n_queries = cfg.queries
    with torch.random.fork_rng(devices=[]):
        adv, _ = attack.run_standard_evaluation(x, y, batch_size=batch_size)
    return adv
