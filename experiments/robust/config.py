"""What one adversarial or corruptions job evaluates: which trained network (shipped or from a
run folder, ``TrainedSource``), on which test images, under which attacks or corruptions."""

from dataclasses import dataclass, field
from typing import Optional

from data import DataConfig
from data.corruptions import CORRUPTIONS, SEVERITIES
from data.mnist_c import MNIST_C
from experiments.core.trained import TrainedSource
from experiments.robust.checks import FULL_BOX
from data.noise import PAPER_LEVELS, noisy_pixel_count
from models.kwinners import check_surrogate

MNIST_PIXELS = 28 * 28

EPS = [0.05, 0.1, 0.15, 0.2, 0.3]
# L0 budgets, pixels: a few, then the paper's noise levels 5%..50% of 784 (39, 78, ..., 392)
PIXELS = [1, 2, 4, 8, 16, *(noisy_pixel_count(MNIST_PIXELS, p) for p in PAPER_LEVELS[1:])]
GRADIENT = ("fgsm", "pgd", "transfer", "ddn")  # the methods that follow a gradient
METHODS = (*GRADIENT, "square", "autoattack", "sparse_rs", "random_pixels")
THREATS = {"sparse_rs": "l0", "random_pixels": "l0", "ddn": "l2"}  # the others: L-inf
LOSSES = ("ce", "margin")
QUERY_ONLY = ("square", "sparse_rs", "autoattack")  # the searches that only query the
#                                                    outputs (AutoAttack: its Square)
ENGINES = ("plain", "sparse")  # what those queries run: the network, or models.sparse_inference


def threat(method):
    """linf (eps in pixel units), l0 (pixels changed) or l2 (DDN's minimum norm)."""
    return THREATS.get(method, "linf")


@dataclass
class AttackConfig:
    """One attack. L-inf: FGSM, PGD, Square (gradient-free), transfer (the source network's
    PGD examples), AutoAttack (standard version: pyautoattack). L2: DDN (minimum norm). L0:
    Sparse-RS (gradient-free) and random pixels (the paper's noise). A gradient method may
    replace the k-winners backward pass by a surrogate (BPDA: identity = straight-through,
    relu, soft = a soft top-k at ``temperature``); PGD may average its gradient over ``eot``
    Gaussian draws of std ``eot_std`` (EOT), or run targeted at ``targets`` classes."""
    method: str
    loss: str = "ce"
    surrogate: Optional[str] = None
    temperature: Optional[float] = None  # surrogate soft only
    eot: int = 0  # PGD only: noise draws per step (0: plain PGD)
    eot_std: float = 0.05  # their std, pixel units
    targets: int = 0  # PGD on the margin only: a run per target class (each image's `targets`
    #                   most likely wrong classes at x, as APGD-T), each on the images not yet
    #                   fooled, up the targeted margin z_t - z_y (0: untargeted)
    budget: Optional[int] = None  # steps (PGD, DDN) or queries (Square, Sparse-RS); null: the
    #                               study's (steps, ddn_steps, queries, sparse_rs_queries)
    images: Optional[int] = None  # the first N images of the subset (null: all)
    engine: str = "plain"  # Square, Sparse-RS, AutoAttack's Square: "sparse" runs their
    #                        queries through models.sparse_inference (the recorded verdict
    #                        stays the network's)

    def check(self):
        if self.method not in METHODS:
            raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.surrogate is not None and self.method not in GRADIENT:
            raise ValueError(f"surrogate: the {self.method} attack uses no gradient of ours")
        check_surrogate(self.surrogate, self.temperature)
        if self.eot and self.method != "pgd":
            raise ValueError("eot: only PGD averages its gradient over noise")
        if self.targets and (self.method != "pgd" or self.loss != "margin" or self.eot):
            raise ValueError("targets: only PGD on the margin without eot runs targeted")
        if self.targets < 0:
            raise ValueError(f"targets: must be >= 0 (0: untargeted), got {self.targets}")
        if self.eot < 0 or not self.eot_std > 0:
            raise ValueError(f"eot, eot_std: must be >= 0 and > 0, got {self.eot}, "
                             f"{self.eot_std}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine: must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine != "plain" and self.method not in QUERY_ONLY:
            raise ValueError(f"engine: only the query-only searches ({', '.join(QUERY_ONLY)}'s "
                             f"Square) run on another engine; {self.method} needs the "
                             f"network's gradient")
        for key in ("budget", "images"):
            if getattr(self, key) is not None:
                _check_positive(key, getattr(self, key))


@dataclass
class ConvergenceConfig:
    """The check that PGD has converged: these PGD attacks again with ``steps`` steps on the
    first ``images`` images of the subset (0: no check); they count in the worst case too."""
    images: int = 200
    steps: int = 100
    attacks: list[str] = field(default_factory=list)


@dataclass
class AutoAttackConfig:
    """The budgets of the autoattack method (requirements-attacks.txt); the defaults are the
    standard version's, which every real run uses (smaller ones are for --smoke)."""
    iterations: int = 100  # APGD-CE, APGD-T and FAB-T steps
    targets: int = 9  # APGD-T and FAB-T target classes
    queries: int = 5000  # Square queries


@dataclass
class DiagnosticsConfig:
    """The gradient-masking diagnostics (experiments/robust/diagnostics.py) on the first
    ``images`` images (0: none), for the network's own gradient and every surrogate the
    attacks use: finite differences at each step of ``fd_steps`` (pixel units) and the loss
    at ``points`` points along the gradient's sign, up to the largest eps."""
    images: int = 100
    fd_steps: list[float] = field(default_factory=lambda: [0.001, 0.03])
    points: int = 31


@dataclass
class AdversarialConfig(TrainedSource):
    data: DataConfig = field(default_factory=DataConfig)
    images: int = 1000  # the fixed random subset of test images, the same for every network
    subset_seed: int = 0
    eps: list[float] = field(default_factory=lambda: list(EPS))  # L-inf, in [0, 1] pixel units
    pixels: list[int] = field(default_factory=lambda: list(PIXELS))  # L0 budgets
    attacks: dict[str, AttackConfig] = field(default_factory=dict)  # name -> attack
    steps: int = 40  # PGD steps (step size 2.5 eps / steps)
    restarts: int = 2  # PGD runs; each after the first on the images that survived
    queries: int = 500  # Square attack queries per image (AutoAttack's Square: 5,000)
    ddn_steps: int = 100  # DDN steps
    sparse_rs_queries: int = 1000  # Sparse-RS queries per image and pixel budget
    transfer_from: str = "dense_cnn2"  # the network whose PGD examples the transfer attack uses
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)
    autoattack: AutoAttackConfig = field(default_factory=AutoAttackConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    seed: int = 0  # random starts and Square's draws (the same for every network)
    batch_size: int = 500
    device: str = "cpu"

    def check(self):
        super().check()
        _check_data(self.data)
        if not self.eps or any(not 0 < e < FULL_BOX for e in self.eps):
            raise ValueError(f"eps: must be a non-empty list in (0, 1), got {self.eps}")
        if not self.pixels or sorted(set(self.pixels)) != self.pixels or not (
                1 <= self.pixels[0] and self.pixels[-1] <= MNIST_PIXELS):
            raise ValueError(f"pixels: must be increasing, in 1..{MNIST_PIXELS}, got {self.pixels}")
        for key in ("images", "steps", "restarts", "queries", "ddn_steps", "sparse_rs_queries",
                    "batch_size"):
            _check_positive(key, getattr(self, key))
        if not self.attacks:
            raise ValueError("attacks: name at least one (configs/mnist_adversarial.yaml lists "
                             "the study's)")
        pgd = [name for name, a in self.attacks.items() if a.method == "pgd"]
        for name in self.convergence.attacks:
            if name not in pgd:
                raise ValueError(f"convergence.attacks: {name!r} is not a PGD attack of "
                                 f"attacks ({', '.join(pgd)})")
        for key in ("iterations", "targets", "queries"):
            _check_positive(f"autoattack.{key}", getattr(self.autoattack, key))
        if not self.diagnostics.fd_steps or min(self.diagnostics.fd_steps) <= 0:
            raise ValueError(f"diagnostics.fd_steps: must be a non-empty list of steps > 0, "
                             f"got {self.diagnostics.fd_steps}")
        _check_positive("diagnostics.points", self.diagnostics.points - 1)


@dataclass
class CorruptionsConfig(TrainedSource):
    data: DataConfig = field(default_factory=DataConfig)  # data.test_limit: a subset
    mnist_c: list[str] = field(default_factory=lambda: list(MNIST_C))  # one setting each
    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))  # the extras
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))  # the extras'
    mosaic_images: int = 10  # test images per row of the mosaics (0: none)
    seed: int = 0  # the corruptions' random draws (the same for every network)
    batch_size: int = 1000
    device: str = "cpu"

    def check(self):
        super().check()
        _check_data(self.data)
        for name in self.mnist_c:
            if name not in MNIST_C:
                raise ValueError(f"mnist_c: {name!r} is not one of {', '.join(MNIST_C)}")
        for name in self.corruptions:
            if name not in CORRUPTIONS:
                raise ValueError(f"corruptions: {name!r} is not one of {', '.join(CORRUPTIONS)}")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ValueError(f"severities: must be a non-empty list in {list(SEVERITIES)}, "
                             f"got {self.severities}")
        _check_positive("batch_size", self.batch_size)


def _check_data(data):
    if data.name != "mnist":
        raise ValueError(f"data.name: these studies perturb MNIST pixels in [0, 1]; got "
                         f"{data.name!r}")


def _check_positive(key, value):
    if value < 1:
        raise ValueError(f"{key}: must be >= 1, got {value}")


ADVERSARIAL_SMOKE = {"images": 12, "eps": [0.2], "pixels": [2, 39], "steps": 3, "restarts": 2,
                     "queries": 8, "ddn_steps": 4, "sparse_rs_queries": 8,
                     "convergence.images": 6, "convergence.steps": 6,
                     "autoattack.iterations": 3, "autoattack.targets": 2,
                     "autoattack.queries": 8, "diagnostics.images": 2, "diagnostics.points": 5}
CORRUPTIONS_SMOKE = {"data.test_limit": 200, "severities": [1, 5], "mosaic_images": 3}


def default_budget(cfg, method):
    """The study's steps or queries for ``method`` (an attack's ``budget`` overrides it)."""
    return {"pgd": cfg.steps, "transfer": cfg.steps, "square": cfg.queries,
            "ddn": cfg.ddn_steps, "sparse_rs": cfg.sparse_rs_queries}.get(method, 1)
