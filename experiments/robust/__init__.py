"""Tasks "adversarial" and "corruptions": the trained MNIST networks under L-inf attacks built to
defeat gradient masking (configs/mnist_adversarial.yaml) and under common corruptions beside
the paper's pixel noise (configs/mnist_corruptions.yaml).

    config.py                the job configs: attacks, eps, budgets; corruptions, severities
    harness.py               the test images, the network on [0, 1] pixels, the threat model's
                             projection and check, the guard that an attack changes nothing
    attacks.py               FGSM, PGD, Square (own code)
    autoattack.py            the optional cross-check with pyautoattack
    adversarial.py           one adversarial job: its steps, per-image records, transfer cache
    corruptions.py           one corruptions job
    checks.py                the sanity checks, from the records
    adversarial_report.py    tables, figure and checks from the records (no torch)
    corruptions_report.py    table and figure from the records (no torch)
    adversarial_task.py      the Task objects experiments/cli.py imports
    corruptions_task.py
"""
