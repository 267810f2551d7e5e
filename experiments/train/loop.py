"""The generic training loop: SGD with per-epoch learning-rate decay.

Nothing here knows about sparsity. Sparse weights keep their zeros through the gradient mask
that SparseWeights installs on its weight (no per-step work), and the job calls the model's
after-epoch hook ``models.update_boost_strength``. Epoch e (0-based) trains with learning rate
``lr * lr_gamma**e`` and batch size ``first_epoch_batch_size`` when e == 0, else ``batch_size``.
"""

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models import sparse_inference

ENGINES = ("plain", "sparse")  # the values of a job's eval.engine


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model, cfg):
    """``torch.optim.SGD`` updating all parameters in one multi-tensor call per step
    (``foreach``: less per-step overhead at batch 4)."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, foreach=True)


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


def evaluation_model(model, engine):
    """What evaluates ``model`` (put in eval mode): the model itself for ``"plain"``, its
    ``models.sparse_inference`` engine for ``"sparse"`` (weights copied: make it after
    training, before evaluating)."""
    model.eval()
    return sparse_inference(model) if engine == "sparse" else model


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
