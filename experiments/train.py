"""The generic training loop: SGD with per-epoch learning-rate decay.

Nothing here knows about sparsity. Sparse weights keep their zeros through the gradient mask
that SparseWeights installs on its weight (no per-step work), and the job calls the model's
after-epoch hook ``models.update_boost_strength``. Epoch e (0-based) trains with learning rate
``lr * lr_gamma**e`` and batch size ``first_epoch_batch_size`` when e == 0, else ``batch_size``.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm



@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    first_epoch_batch_size: Optional[int] = None  # None: same as batch_size
    test_batch_size: int = 1000
    lr: float = 0.01
    lr_gamma: float = 0.8  # epoch e uses lr * lr_gamma**e
    momentum: float = 0.0
    weight_decay: float = 0.0
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N

    def check(self):
        for key in ("epochs", "batch_size", "test_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.first_epoch_batch_size is not None and self.first_epoch_batch_size < 1:
            raise ValueError(f"first_epoch_batch_size: must be >= 1, got "
                             f"{self.first_epoch_batch_size}")
        if self.lr <= 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr: must be > 0 with lr_gamma in (0, 1], got {self.lr}, "
                             f"{self.lr_gamma}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError("momentum: momentum and weight_decay must be >= 0")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def lr_at(self, epoch):
        return self.lr * self.lr_gamma ** epoch

    def batch_size_at(self, epoch):
        if epoch == 0 and self.first_epoch_batch_size is not None:
            return self.first_epoch_batch_size
        return self.batch_size


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model, cfg):
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_epoch(model, batches, optimizer, device, total=None, progress=False, desc="train"):
    """One pass over ``batches`` of (x, y); returns the mean training loss per sample."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    seen = 0
    for x, y in tqdm(batches, total=total, disable=not progress, desc=desc, leave=False,
                     unit="batch", mininterval=1.0):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
    return loss_sum.item() / max(seen, 1)


@torch.inference_mode()
def count_correct(model, x, y, batch_size, device):
    """Number of correct predictions of ``model`` (in eval mode) on (x, y)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(y), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        yb = y[start:start + batch_size].to(device, non_blocking=True)
        correct += (model(xb).argmax(dim=1) == yb).sum()
    return int(correct)


def num_batches(num_samples, batch_size):
    return math.ceil(num_samples / batch_size)
