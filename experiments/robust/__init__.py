"""Tasks "adversarial" and "corruptions": the trained MNIST networks under attacks built to
defeat gradient masking (configs/mnist_adversarial.yaml) and under MNIST-C and other common
corruptions beside the paper's pixel noise (configs/mnist_corruptions.yaml).

    config.py                the job configs: attacks, eps and pixel budgets; corruptions
    harness.py               the test images, the network on [0, 1] pixels, the L-inf
                             projection and check, the guard that an attack changes nothing
    attacks.py               FGSM, PGD (and EOT), Square, DDN (own code)
    l0.py                    the L0 threat model and Sparse-RS (own code)
    autoattack.py            AutoAttack's standard version through pyautoattack
    diagnostics.py           gradient-masking measures per image
    steps.py                 what each step of an adversarial job does and records
    adversarial.py           one adversarial job: its plan, resume, per-image records
    corruptions.py           one corruptions job, the MNIST-C cache, the mosaics
    checks.py                the worst case and the sanity checks, from the records
    adversarial_records.py   the records as frames (no torch)
    adversarial_report.py    L-inf tables, figure, AutoAttack and checks (no torch)
    adversarial_views.py     L0, minimum-norm, diagnostics and paired views (no torch)
    corruptions_report.py    MNIST-C and extra tables, relative mCE, figure (no torch)
    adversarial_task.py      the Task objects experiments/cli.py imports
    corruptions_task.py
"""
