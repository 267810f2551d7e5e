"""Attacks on a model of [0, 1] pixels (harness.PixelModel): FGSM, PGD (optionally with EOT)
and Square in L-inf; DDN, a minimum-norm attack in L2.

Each takes images x (B, C, H, W) and labels y (B,) and returns x' (B, C, H, W) in the threat
model's set [lo, hi] (harness.py). Losses, per image, to be maximised, on the model's outputs z
(log-probabilities or logits: log-softmax only shifts a row, so margins are the same):

    ce      cross-entropy  -log softmax(z)_y
    margin  max_{j != y} z_j - z_y        (> 0 exactly when x' is misclassified)

FGSM    x' = project(x + eps sign(grad L(x)))                     (Goodfellow et al., 2015)
PGD     x_0 = project(x + eps U(-1, 1)),  x_{t+1} = project(x_t + a sign(grad L(x_t))),
        a = 2.5 eps / steps, so the steps can cross the ball 2.5 times (Madry et al., 2018).
        An image is fooled at the first misclassified iterate, and with ``stop_early`` it stays
        there; ``restarts`` runs, each after the first only on the images not yet fooled.
        Targeted (``pgd_targeted``): one run per target class t, the image's most likely
        wrong classes at x in turn (as APGD-T, Croce & Hein 2020), up z_t - z_y, each run on
        the images the earlier ones did not fool.
EOT     PGD whose step follows the mean gradient over ``samples`` draws of Gaussian input
        noise, g = (1/S) sum_s grad L(clip(x_t + std n_s)), n_s ~ N(0, I) (expectation over
        transformation, Athalye et al., 2018): it smooths a jagged landscape at the noise's
        scale; the iterate x_t itself is what is classified.
Square  gradient-free (Andriushchenko et al., 2020): start from vertical stripes of +-eps;
        each query sets one random s x s window of the perturbation to a random +-eps and keeps
        the candidate when the loss grows (or it is misclassified); s = round(sqrt(p H W)),
        with p = 0.8 halved at the paper's points of its schedule for 10,000 queries.
DDN     decoupled direction and norm (Rony et al., 2019), minimum L2 norm: delta_0 = 0, a
        norm budget r_0 = 1; each step moves delta by a (cosine-annealed from 1 to 0.01) along
        grad CE / |grad CE|_2, shrinks r by a factor 1 - gamma where x + delta is already
        misclassified and grows it by 1 + gamma where not, rescales delta to norm r and clips
        x + delta into the box; it returns the smallest misclassified x + delta seen.

Gradients are taken with respect to the input only (``torch.autograd.grad``): no parameter
gradient is accumulated. Wrap a call in ``models.surrogate_gradients`` for BPDA.
"""

import math

import torch
import torch.nn.functional as F

from data.corruptions import random_squares
from experiments.robust.harness import bounds, project


def margin(z, y):
    """max_{j != y} z_j - z_y per image (B,)."""
    true = z.gather(1, y[:, None]).squeeze(1)
    return z.scatter(1, y[:, None], -math.inf).amax(1) - true


LOSSES = {"ce": lambda z, y: F.cross_entropy(z, y, reduction="none"), "margin": margin}


def targeted_margin(target):
    """The loss z_t - z_y per image for target classes ``target`` (B,): > 0 once t beats y."""
    def loss(z, y):
        return (z.gather(1, target[:, None]) - z.gather(1, y[:, None])).squeeze(1)
    return loss


def input_gradient(model, x, y, loss):
    """(outputs z (B, classes), grad_x of the summed loss (B, C, H, W)) at ``x``; ``loss``
    a name of LOSSES or a function (z, y) -> (B,)."""
    x = x.detach().requires_grad_()
    z = model(x)
    (grad,) = torch.autograd.grad((loss if callable(loss) else LOSSES[loss])(z, y).sum(), x)
    return z.detach(), grad


def fgsm(model, x, y, eps, loss="ce"):
    _, grad = input_gradient(model, x, y, loss)
    return project(x + eps * grad.sign(), *bounds(x, eps))


def eot_gradient(samples, std, generator):
    """A gradient function like ``input_gradient`` whose gradient is the mean over ``samples``
    Gaussian draws of std ``std`` around x (one batched pass), its outputs those at x."""
    def gradient(model, x, y, loss):
        with torch.no_grad():
            z = model(x)
        noise = torch.randn((samples, *x.shape), generator=generator).to(x.device)
        noisy = (x.unsqueeze(0) + std * noise).clamp(0.0, 1.0).flatten(0, 1)  # (S B, C, H, W)
        _, grad = input_gradient(model, noisy, y.repeat(samples), loss)
        return z, grad.view(samples, *x.shape).mean(0)
    return gradient


def pgd(model, x, y, eps, steps, loss="ce", restarts=1, generator=None, stop_early=True,
        gradient=input_gradient):
    """PGD with random starts; returns x' (see the module docstring). ``gradient`` (model, x,
    y, loss) -> (outputs, grad) gives each step's direction (``eot_gradient`` for EOT)."""
    adv, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(restarts):
        todo = (~fooled).nonzero().squeeze(1)
        if not len(todo):
            break
        adv[todo], fooled[todo] = pgd_run(model, x[todo], y[todo], eps, steps, loss, generator,
                                          stop_early, gradient)
    return adv


def pgd_targeted(model, x, y, eps, steps, targets, generator=None, gradient=input_gradient):
    """Targeted PGD: run i (of ``targets``) aims each image at its (i + 1)-th most likely
    class other than y at x, on the images the earlier runs did not fool; returns x'."""
    with torch.no_grad():
        ranked = model(x).scatter(1, y[:, None], -math.inf).argsort(1, descending=True)
    adv, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i in range(min(targets, ranked.shape[1] - 1)):
        todo = (~fooled).nonzero().squeeze(1)
        if not len(todo):
            break
        adv[todo], fooled[todo] = pgd_run(model, x[todo], y[todo], eps, steps, "margin",
                                          generator, True, gradient, ranked[todo, i])
    return adv


def pgd_run(model, x, y, eps, steps, loss, generator, stop_early, gradient=input_gradient,
            target=None):
    """One PGD run from a random start: (x' (B, ...), fooled at some iterate (B,)); with
    ``target`` (B,) classes, up the targeted margin z_t - z_y instead of ``loss``."""
    lo, hi = bounds(x, eps)
    start = torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1
    adv = project(x + eps * start, lo, hi)
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    active = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        step_loss = loss if target is None else targeted_margin(target[active])
        z, grad = gradient(model, adv[active], y[active], step_loss)
        wrong = z.argmax(1) != y[active]
        fooled[active[wrong]] = True
        if stop_early:
            active, grad = active[~wrong], grad[~wrong]
            if not len(active):
                return adv, fooled
        step = adv[active] + (2.5 * eps / steps) * grad.sign()
        adv[active] = project(step, lo[active], hi[active])
    with torch.no_grad():
        fooled[active] |= model(adv[active]).argmax(1) != y[active]
    return adv, fooled


SQUARE_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                   (6000, 128), (8000, 256), (10_000, 512))  # (up to query i of 10,000, p / )


def square_fraction(query, queries, p_init=0.8):
    """The window's share p of the image at ``query`` of ``queries`` (the schedule rescaled)."""
    at = int(query / queries * 10_000)
    return p_init / next(divisor for limit, divisor in SQUARE_SCHEDULE if at <= limit)


def _signs(shape, generator, like):
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(like)


@torch.no_grad()
def random_search(model, x, y, adv, queries, loss, propose):
    """The loop Square and Sparse-RS share, from x' = ``adv``: each query asks
    ``propose(adv, todo, query)`` for candidates for the images not yet fooled (indices
    todo) and keeps a candidate when the loss grows or it is misclassified; propose returns
    (candidates, commit), commit(kept, keep) told which were kept. Returns x'."""
    z = model(adv)
    best, fooled = LOSSES[loss](z, y), z.argmax(1) != y
    for query in range(1, queries):
        todo = (~fooled).nonzero().squeeze(1)
        if not len(todo):
            break
        candidate, commit = propose(adv, todo, query)
        z = model(candidate)
        value, wrong = LOSSES[loss](z, y[todo]), z.argmax(1) != y[todo]
        keep = (value > best[todo]) | wrong
        adv[todo[keep]], best[todo[keep]] = candidate[keep], value[keep]
        fooled[todo[keep & wrong]] = True
        commit(todo[keep], keep)
    return adv


@torch.no_grad()
def square(model, x, y, eps, queries, loss="margin", generator=None, p_init=0.8):
    """The L-inf Square attack with ``queries`` model queries per image; returns x'."""
    b, c, h, w = x.shape
    lo, hi = bounds(x, eps)

    def propose(adv, todo, query):
        side = round(math.sqrt(square_fraction(query, queries, p_init) * h * w))
        window = random_squares(len(todo), h, w, min(max(side, 1), h - 1), generator)
        delta = torch.where(window.to(x.device), eps * _signs((len(todo), c, 1, 1), generator, x),
                            adv[todo] - x[todo])
        return project(x[todo] + delta, lo[todo], hi[todo]), lambda kept, keep: None

    start = project(x + eps * _signs((b, c, 1, w), generator, x), lo, hi)
    return random_search(model, x, y, start, queries, loss, propose)


def ddn(model, x, y, steps, init_norm=1.0, gamma=0.05, final_step=0.01):
    """DDN (module docstring): (x' (B, ...), its L2 distance to x (B,), inf where no step was
    misclassified; x' = x there)."""
    b = len(x)
    delta, best = torch.zeros_like(x), x.clone()
    radius = torch.full((b,), init_norm, device=x.device)
    best_norm = torch.full((b,), math.inf, device=x.device)
    for step in range(steps + 1):
        z, grad = input_gradient(model, x + delta, y, "ce")
        norm = delta.flatten(1).norm(dim=1)
        wrong = z.argmax(1) != y
        better = wrong & (norm < best_norm)
        best[better], best_norm[better] = (x + delta)[better], norm[better]
        if step == steps:
            break
        a = final_step + (1 - final_step) * (1 + math.cos(math.pi * step / steps)) / 2
        delta = delta + a * grad / _per_image(grad.flatten(1).norm(dim=1).clamp(min=1e-12), x)
        radius = torch.where(wrong, radius * (1 - gamma), radius * (1 + gamma))
        delta = delta * _per_image(radius / delta.flatten(1).norm(dim=1).clamp(min=1e-12), x)
        delta = (x + delta).clamp(0.0, 1.0) - x
    return best, best_norm


def _per_image(v, like):
    """(B,) values shaped to broadcast over images like ``like`` (B, C, H, W)."""
    return v.view(-1, *[1] * (like.dim() - 1))
