"""Experiments: the studies that wire models/ and data/ into runs, records and reports.

    core/      config schema, experiment files (suites), run folders, launchers, selection,
               tables and figures as files: shared by every study
    train/     task "train": one job = train a network with a seed, noise sweep every epoch
    report/    the report of train experiments, from their records alone
    theory/    task "theory": section 3's match probabilities (Figures 2 and 3)
    analysis/  task "analysis": inside trained networks (weights, angles, winners under noise)
    robust/    tasks "adversarial" and "corruptions": attacks and corruptions beyond the paper

Studies import core/, models/ and data/, never each other; experiments/cli.py maps each
``task:`` to its study.
"""
