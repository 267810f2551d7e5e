"""k-winners-take-all activations with boosting and duty cycles (paper section 2).

For one sample with pre-activations ``x`` (n units), k-winners picks the k units with the
largest *boosted* value ``x_i * b_i`` and outputs the raw ``x_i`` at those units, 0 elsewhere:

    b_i = exp(beta * (k / n - d_i))          (boost factor; skipped when beta == 0)
    y_i = x_i  if i is among the top-k of x * b,  else 0

No ReLU is applied: a negative winner passes through as negative. The gradient is 1 at the
winners and 0 elsewhere (like ReLU's mask); nothing flows to the duty cycles or to beta.

Duty cycle ``d_i`` is the running fraction of training samples in which unit i was active
(output > 0). The paper writes it as an exponential moving average,

    d_i(t) = (1 - alpha) * d_i(t - 1) + alpha * [unit i active at t],

and as run it starts at d = 0, counts the training samples seen so far ``t`` (t += B per
batch of B samples) and with ``period = min(duty_cycle_period, t)`` updates

    d <- (d * (period - B) + active_count) / period.

So for the first ``duty_cycle_period`` (1000) samples it is the exact mean over all samples
seen; afterwards it is an EMA with alpha = B / 1000 (0.064 at batch 64, 0.004 at batch 4).
A unit whose duty cycle falls below the target density k/n gets b > 1 and wins more easily.
Duty cycles change only in training mode; in eval mode the layer keeps ``k_inference_factor``
times more winners, ``k_eval = min(round(k * k_inference_factor), n)``, and still boosts with
the frozen duty cycles. ``update_boost_strength()`` (once per epoch) multiplies beta by
``boost_strength_factor``.

The torch ops below (torch.topk, gather, scatter; autograd does the rest) serve every device
and dtype and are the reference. For float32 tensors on the CPU one call of a numba kernel
(models/kernels/kwinners.py) selects the same winners by counting passes, writes the output,
marks the losers for the backward pass and updates the duty cycles; tests hold the two to
identical outputs, gradients and duty cycles.
"""

import contextlib

import torch
from torch import nn

from models import backend, kernels


def k_winners(x, k, scores=None):
    """Keep the raw values of ``x`` (B, n) at the k largest ``scores`` of each row; zero the rest.

    ``scores`` defaults to ``x`` (pass boosted values to boost). Exactly k winners per row; ties
    go to whichever index torch.topk returns. Returns (output (B, n), winner indices (B, k),
    their values (B, k)). Only the B*k winning values are gathered and scattered into a fresh
    zero tensor (no (B, n) mask), so autograd's gradient is 1 at the winners and 0 elsewhere.
    """
    scores = x.detach() if scores is None else scores
    winners = scores.topk(k, dim=1, sorted=False).indices
    values = x.gather(1, winners)
    return x.new_zeros(x.shape).scatter_(1, winners, values), winners, values


def soft_top_k(x, scores, k, temperature):
    """The smoothed k-winners proxy (B, n) whose gradient attacks may follow (Tramer et al.,
    2020: adaptive attacks smooth the selection). With s the boosted scores of a row,

        tau   = (s_(k) + s_(k+1)) / 2     midpoint of the k-th and (k+1)-th largest score
        sigma = std(s) over the row        (no gradient: the unit of the temperature)
        proxy = x * sigmoid((s - tau) / (temperature * sigma))

    tau keeps its gradient, so a losing unit's proxy answers to the winners it competes with:
    the exact backward pass never does. temperature -> 0 gives the winners' mask; a large
    temperature gives x / 2 (straight-through, halved). With k = n every unit wins: x."""
    if k >= scores.shape[1]:
        return x
    top = scores.topk(k + 1, dim=1).values  # (B, k + 1), largest first
    tau = (top[:, k - 1] + top[:, k]) / 2  # (B,)
    sigma = scores.detach().std(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)
    return x * torch.sigmoid((scores - tau[:, None]) / (temperature * sigma))


# Backward passes that attacks may put in place of k-winners' own (gradient 1 at the winners,
# 0 elsewhere): BPDA, "backward pass differentiable approximation" (Athalye et al., 2018).
# Each maps (x (B, n), boosted scores (B, n), k, temperature) to a proxy whose gradient is used.
SURROGATES = {
    "identity": lambda x, scores, k, temperature: x,  # straight-through: every unit passes it
    "relu": lambda x, scores, k, temperature: torch.relu(x),  # the units with positive input
    "soft": soft_top_k,  # a temperature-controlled soft top-k (its temperature required)
}
TEMPERED = ("soft",)  # the surrogates that take a temperature


@contextlib.contextmanager
def surrogate_gradients(model, mode, temperature=None):
    """Within the block, every k-winners layer of ``model`` keeps its forward pass (outputs
    identical) and takes the backward pass of ``mode`` (a key of SURROGATES, or None for its
    own); ``temperature`` (> 0) is the soft top-k's and only its."""
    check_surrogate(mode, temperature)
    layers = [m for m in model.modules() if isinstance(m, _KWinnersBase)]
    saved = [(m.surrogate, m.surrogate_temperature) for m in layers]
    try:
        for m in layers:
            m.surrogate, m.surrogate_temperature = mode, temperature
        yield model
    finally:
        for m, (old, old_temperature) in zip(layers, saved):
            m.surrogate, m.surrogate_temperature = old, old_temperature


def check_surrogate(mode, temperature):
    """ValueError for an unknown surrogate, or a temperature it does not take or lacks."""
    if mode is not None and mode not in SURROGATES:
        raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)} or None, got {mode!r}")
    if (mode in TEMPERED) != (temperature is not None):
        raise ValueError(f"temperature: the {', '.join(TEMPERED)} surrogate needs one (> 0) and "
                         f"the others take none; got {temperature!r} for {mode!r}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_k(k, n):
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n} (n = {n}), got {k}")


class _KWinnersBase(nn.Module):
    """Shared state and bookkeeping of KWinners and KWinners2d (buffers survive state_dict)."""

    def __init__(self, n, k, k_inference_factor, boost_strength, boost_strength_factor,
                 duty_cycle_period, duty_cycle_shape):
        super().__init__()
        if n is not None:
            _check_k(k, n)
        if boost_strength < 0 or not 0 <= boost_strength_factor <= 1:
            raise ValueError("boost_strength must be >= 0 and boost_strength_factor in [0, 1]")
        self.n, self.k = n, k
        self.k_inference_factor = k_inference_factor
        self.boost_strength_factor = boost_strength_factor
        self.duty_cycle_period = duty_cycle_period
        self.register_buffer("boost_strength", torch.tensor(float(boost_strength)))
        self.register_buffer("duty_cycle", torch.zeros(duty_cycle_shape))
        self.register_buffer("samples_seen", torch.tensor(0, dtype=torch.long))
        self.surrogate = None  # a key of SURROGATES: the backward pass of attacks (BPDA)
        self.surrogate_temperature = None  # the soft surrogate's temperature

    @property
    def k_eval(self):
        k_eval = int(round(self.k * self.k_inference_factor))
        return k_eval if self.n is None else min(k_eval, self.n)

    def boost_factors(self):
        """b = exp(beta * (k/n - d)), shaped like ``duty_cycle`` (all ones when beta == 0).

        Computed with tensor ops only (no ``.item()``), so a GPU never waits for the host.
        """
        return torch.exp(self.boost_strength * (self.k / self.n - self.duty_cycle))

    def update_boost_strength(self):
        """beta <- beta * boost_strength_factor (call once after each training epoch)."""
        self.boost_strength.mul_(self.boost_strength_factor)

    def _forward_flat(self, x, group):
        """k-winners on ``x`` (B, n), its backward pass replaced when ``surrogate`` is set."""
        out = self._k_winners_flat(x, group)
        if self.surrogate is None:
            return out
        k = self.k if self.training else self.k_eval
        proxy = SURROGATES[self.surrogate](x, self._boosted(x, group), k,
                                           self.surrogate_temperature)
        return out.detach() + (proxy - proxy.detach())  # forward: out; backward: proxy's

    def _boosted(self, x, group):
        """The scores (B, n) that pick the winners: x times its duty cycle's boost factor."""
        b = x.shape[0]
        return (x.view(b, -1, group) * self.boost_factors().view(1, -1, 1)).view(b, -1)

    def _k_winners_flat(self, x, group):
        """k-winners on ``x`` (B, n) where each duty cycle covers ``group`` consecutive entries."""
        b = x.shape[0]
        k = self.k if self.training else self.k_eval
        boost = self.boost_factors()  # (n / group,)
        if backend.uses_cpu_kernel(x, self.duty_cycle):
            return kernels.kwinners.k_winners(x, self, boost, group, k)
        scores = self._boosted(x.detach(), group)
        out, winners, values = k_winners(x, k, scores)
        if self.training:
            units = winners if group == 1 else winners.div(group, rounding_mode="floor")
            active = torch.zeros_like(self.duty_cycle).index_add_(
                0, units.flatten(), (values > 0).flatten().to(self.duty_cycle))
            self._update_duty_cycle(active, b, group)
        return out

    @torch.no_grad()
    def _update_duty_cycle(self, active, batch, group):
        """d <- (d * (period - B) + active) / period, period = min(P, samples seen so far).

        ``active`` counts, per duty cycle, the winners with a positive output in this batch of
        B samples, divided by ``group`` (H*W for a channel: the mean over positions). Written
        as d <- d + (B / period) * (active / B - d), with tensor ops only (no host sync).
        """
        period = self.samples_seen.add_(batch).clamp(max=self.duty_cycle_period)
        self.duty_cycle.lerp_(active / (batch * group), batch / period)

    def extra_repr(self):
        return (f"n={self.n}, k={self.k}, k_eval={self.k_eval}, "
                f"boost_strength={self.boost_strength.item():.4g}, "
                f"boost_strength_factor={self.boost_strength_factor}, "
                f"duty_cycle_period={self.duty_cycle_period}")


class KWinners(_KWinnersBase):
    """k-winners over the n units of a (B, n) input, one duty cycle per unit."""

    def __init__(self, n, k, k_inference_factor=1.0, boost_strength=0.0,
                 boost_strength_factor=1.0, duty_cycle_period=1000):
        super().__init__(n, k, k_inference_factor, boost_strength, boost_strength_factor,
                         duty_cycle_period, (n,))

    def forward(self, x):  # (B, n)
        return self._forward_flat(x, group=1)


class KWinners2d(_KWinnersBase):
    """k-winners over all C*H*W values of each sample of a (B, C, H, W) input.

    Winners are chosen globally per sample (not per location), n = C*H*W. Duty cycles are per
    channel: the channel's active entries over the batch and H, W, divided by H*W, so that
    d_c is the mean fraction of positions where channel c is active. The boost b_c is shared
    by all positions of channel c.
    """

    def __init__(self, channels, k, k_inference_factor=1.0, boost_strength=0.0,
                 boost_strength_factor=1.0, duty_cycle_period=1000, n=None):
        # n = C*H*W enters the boost's k/n; given here, or taken from the first input.
        super().__init__(n, k, k_inference_factor, boost_strength, boost_strength_factor,
                         duty_cycle_period, (channels,))
        self.channels = channels

    def forward(self, x):  # (B, C, H, W)
        b, c, h, w = x.shape
        n = c * h * w
        if self.n is None:
            _check_k(self.k, n)
            self.n = n
        elif n != self.n or c != self.channels:
            raise ValueError(f"KWinners2d built for {self.channels} channels and n={self.n} "
                             f"values, got {c}x{h}x{w}={n}")
        # Channel-major flattening: entry i belongs to channel i // (H*W).
        return self._forward_flat(x.reshape(b, n), group=h * w).view(b, c, h, w)
