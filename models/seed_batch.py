"""Several seeds of one network trained as one module: S networks, one batched pass.

``SeedBatch`` holds S networks built by ``build_network`` from the same NetworkConfig (one per
seed) with every parameter and buffer stacked along a leading seed dimension. Its forward pass
takes seed s's own batch at ``x[s]`` and computes, for every s at once, what network s alone
computes on ``x[s]``; each seed keeps its own weights, sparse masks, duty cycles, sample count
and boost strength. Many small products become a few larger ones, which is what pays at batch 4.

    conv block   (B, S*C, H, W): seed s's channels are the s-th block of C, so one grouped
                 convolution (groups = S) applies each seed's own filters to its own channels;
                 MaxPool2x2 works per plane and needs no change
    k-winners    the same memory seen as (S, B, n), n = C*H*W (channel-major, as in
                 KWinners2d); each seed's slice goes through the numba kernel of
                 models/kwinners_cpu.py with its own boost and duty cycles (float32 on the CPU),
                 or through torch.topk over all seeds at once elsewhere
    hidden       (S, B, n) -> y[s] = x[s] W[s]^T + b[s], one torch.baddbmm; a sparse weight's
                 gradient is multiplied by its (S, out, in) mask as soon as it is accumulated,
                 as SparseWeights does
    output       the same batched product, then log-softmax over the classes: (S, B, classes)

Training is exact, not an approximation. With the loss ``sum_s L_s`` (``seed_losses(...).sum()``,
L_s seed s's mean NLL), seed s's parameters reach only seed s's outputs, so the gradient of
seed s's parameters is dL_s/dtheta_s, its own. SGD (momentum, weight decay, foreach) updates
every entry from that entry's own gradient and state, so one optimizer over the stacked
parameters takes the S steps that S optimizers would. Results agree with the per-seed path to
float rounding (a batched product may sum in another order), not bit for bit.

``unstack()`` gives back S ordinary networks, and ``state_dicts()`` and
``seed_optimizer_states()`` their state in the per-seed format, so checkpoints stay the same
files. Batch norm, dropout and DropConnect are not supported (they raise ValueError).
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from models.backend import chunk_count, uses_cpu_kernel
from models.kwinners import KWinners, KWinners2d, _KWinnersCPU, kwinners_cpu
from models.network import build_network, check_network_config
from models.pooling import MaxPool2x2
from models.sparse_weights import SparseWeights


def check_supported(cfg):
    """Raise ValueError naming the first NetworkConfig key that SeedBatch cannot batch."""
    check_network_config(cfg)
    if cfg.batch_norm:
        raise ValueError("batch_norm: SeedBatch does not support batch norm")
    if cfg.dropout > 0:
        raise ValueError("dropout: SeedBatch does not support dropout")
    for i, layer in enumerate(cfg.conv):
        if layer.dropconnect > 0:
            raise ValueError(f"conv[{i}].dropconnect: SeedBatch does not support DropConnect")
    if cfg.hidden.dropconnect > 0:
        raise ValueError("hidden.dropconnect: SeedBatch does not support DropConnect")


def _stack(tensors):
    return torch.stack([t.detach() for t in tensors])


class SeedConv2d(nn.Module):
    """S ``nn.Conv2d`` of the same shape as one grouped convolution (groups = S)."""

    def __init__(self, convs):
        super().__init__()
        self.weight = nn.Parameter(_stack(c.weight for c in convs))  # (S, O, C, kh, kw)
        self.bias = nn.Parameter(_stack(c.bias for c in convs))  # (S, O)

    def forward(self, x):  # (B, S*C, H, W) -> (B, S*O, H', W')
        return F.conv2d(x, self.weight.flatten(0, 1), self.bias.flatten(),
                        groups=self.weight.shape[0])

    def seed_state(self, s):
        return {"weight": self.weight[s], "bias": self.bias[s]}


class _SeedLinearFunction(torch.autograd.Function):
    """y[s] = x[s] W[s]^T + b[s] with the backward products chosen by hand: dx = dy W and
    dW = dy^T x, each one bmm that writes its result in the layout of its tensor. (Autograd's
    own backward of this baddbmm gives dW transposed and then copies the whole weight, and the
    other ways round, y^T = W x^T, make dx 3x slower here.)"""

    @staticmethod
    def forward(ctx, x, weight, bias):  # (S, B, in), (S, out, in), (S, out)
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):  # (S, B, out)
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        return (torch.bmm(grad, weight) if need_x else None,
                torch.bmm(grad.transpose(1, 2), x) if need_weight else None,
                grad.sum(1) if need_bias else None)


class SeedLinear(nn.Module):
    """S ``nn.Linear`` (or S ``SparseWeights(nn.Linear)``, each with its own mask) of the same
    shape as one batched product."""

    def __init__(self, layers):
        super().__init__()
        sparse = isinstance(layers[0], SparseWeights)
        linears = [layer.module if sparse else layer for layer in layers]
        self.weight = nn.Parameter(_stack(m.weight for m in linears))  # (S, out, in)
        self.bias = nn.Parameter(_stack(m.bias for m in linears))  # (S, out)
        self.register_buffer("mask", _stack(m.mask for m in layers) if sparse else None)
        if sparse:
            self.weight.register_post_accumulate_grad_hook(self._mask_gradient)

    @torch.no_grad()
    def _mask_gradient(self, weight):
        weight.grad.mul_(self.mask)

    def forward(self, x):  # (S, B, in) -> (S, B, out)
        return _SeedLinearFunction.apply(x, self.weight, self.bias)

    def seed_state(self, s):
        if self.mask is None:
            return {"weight": self.weight[s], "bias": self.bias[s]}
        return {"mask": self.mask[s], "module.weight": self.weight[s],
                "module.bias": self.bias[s]}


class SeedFlatten(nn.Module):
    """(B, S*C, H, W) -> (S, B, C*H*W): each seed's ``nn.Flatten`` (channel-major)."""

    def __init__(self, num_seeds):
        super().__init__()
        self.num_seeds = num_seeds

    def forward(self, x):
        return x.reshape(x.shape[0], self.num_seeds, -1).transpose(0, 1)


class _SeedKWinnersCPU(torch.autograd.Function):
    """``_KWinnersCPU`` of models/kwinners.py once per seed slice: the numba kernel picks
    seed s's winners with seed s's boost and updates seed s's duty cycles and sample count."""

    @staticmethod
    def forward(ctx, x, layer, boost, group, k):  # x (S, B, n), any strides
        x = x.detach()
        out = torch.empty_like(x)  # the same strides as x
        save = ctx.needs_input_grad[0]
        losers = torch.empty(x.shape if save else (x.shape[0], 0, 0), dtype=torch.bool)
        seen = layer.samples_seen.view(-1, 1)
        for s in range(x.shape[0]):
            args = (x[s].numpy(), boost[s].numpy(), group, k, out[s].numpy(),
                    losers[s].numpy(), layer.duty_cycle[s].numpy(), seen[s].numpy(),
                    layer.duty_cycle_period, layer.training)
            kwinners_cpu.forward(*args, chunk_count(x[s]))
        ctx.save_for_backward(losers)
        return out

    backward = staticmethod(_KWinnersCPU.backward)  # the gradient at the winners only


class SeedKWinners(nn.Module):
    """S ``KWinners`` layers (input (S, B, n)); the state of each is a row of the buffers.

    Each seed follows the arithmetic of models/kwinners.py: boost b = exp(beta_s * (k/n - d_s)),
    the top k (k_eval in eval mode) of x * b, and in training
    d_s <- lerp(d_s, active_s / (B * group), B / min(period, t_s)), t_s += B.
    """

    def __init__(self, layers):
        super().__init__()
        first = layers[0]
        self.k, self.k_eval, self.n = first.k, first.k_eval, first.n
        self.boost_strength_factor = first.boost_strength_factor
        self.duty_cycle_period = first.duty_cycle_period
        self.register_buffer("boost_strength", _stack(m.boost_strength for m in layers))  # (S,)
        self.register_buffer("duty_cycle", _stack(m.duty_cycle for m in layers))  # (S, units)
        self.register_buffer("samples_seen", _stack(m.samples_seen for m in layers))  # (S,)

    def forward(self, x):  # (S, B, n)
        return self._forward_flat(x, group=1)

    def boost_factors(self):  # (S, n / group)
        return torch.exp(self.boost_strength.unsqueeze(1) * (self.k / self.n - self.duty_cycle))

    def update_boost_strength(self):
        self.boost_strength.mul_(self.boost_strength_factor)

    def seed_state(self, s):
        return {"boost_strength": self.boost_strength[s], "duty_cycle": self.duty_cycle[s],
                "samples_seen": self.samples_seen[s]}

    def _forward_flat(self, x, group):
        """k-winners on each seed's ``x[s]`` (B, n), one duty cycle per ``group`` entries."""
        k = self.k if self.training else self.k_eval
        boost = self.boost_factors()
        if kwinners_cpu is not None and uses_cpu_kernel(x, self.duty_cycle):
            return _SeedKWinnersCPU.apply(x, self, boost, group, k)
        return self._k_winners_torch(x, boost, group, k)

    def _k_winners_torch(self, x, boost, group, k):
        """The torch reference of models/kwinners.py for all seeds at once (GPU, float64)."""
        s, b, n = x.shape
        scores = (x.detach().reshape(s, b, -1, group) * boost.view(s, 1, -1, 1)).view(s, b, n)
        winners = scores.topk(k, dim=2, sorted=False).indices  # (S, B, k)
        values = x.gather(2, winners)
        out = x.new_zeros(x.shape).scatter_(2, winners, values)
        if self.training:
            units = winners if group == 1 else winners.div(group, rounding_mode="floor")
            active = torch.zeros_like(self.duty_cycle).scatter_add_(
                1, units.reshape(s, -1), (values > 0).reshape(s, -1).to(self.duty_cycle))
            self._update_duty_cycle(active, b, group)
        return out

    @torch.no_grad()
    def _update_duty_cycle(self, active, batch, group):
        period = self.samples_seen.add_(batch).clamp(max=self.duty_cycle_period)  # (S,)
        self.duty_cycle.lerp_(active / (batch * group), (batch / period).unsqueeze(1))


class SeedKWinners2d(SeedKWinners):
    """S ``KWinners2d`` layers on the grouped layout (B, S*C, H, W); per-channel duty cycles."""

    def forward(self, x):  # (B, S*C, H, W)
        b, _, h, w = x.shape
        seeds = self.duty_cycle.shape[0]
        if x.shape[1] * h * w != seeds * self.n:
            raise ValueError(f"KWinners2d built for n={self.n} values per seed, got "
                             f"{x.shape[1] // seeds}x{h}x{w}")
        flat = x.reshape(b, seeds, self.n).transpose(0, 1)  # (S, B, n), seed s's rows
        return self._forward_flat(flat, group=h * w).transpose(0, 1).reshape(x.shape)


def _seed_layer(name, layers):
    """The batched form of ``layers`` (the child ``name`` of every seed's network)."""
    first = layers[0]
    if any(type(layer) is not type(first) for layer in layers):
        raise ValueError(f"{name}: the networks differ in this layer's type")
    if isinstance(first, nn.Conv2d):
        return SeedConv2d(layers)
    if isinstance(first, (nn.Linear, SparseWeights)):
        return SeedLinear(layers)
    if isinstance(first, KWinners2d):
        return SeedKWinners2d(layers)
    if isinstance(first, KWinners):
        return SeedKWinners(layers)
    if isinstance(first, nn.Flatten):
        return SeedFlatten(len(layers))
    if isinstance(first, nn.LogSoftmax):
        return nn.LogSoftmax(dim=-1)
    if isinstance(first, (MaxPool2x2, nn.ReLU)):
        return type(first)()
    raise ValueError(f"{name}: SeedBatch does not support {type(first).__name__}")


class SeedBatch(nn.Module):
    """S networks of ``cfg`` (built by ``build_network``) as one module.

    forward: x (S, B, C, H, W), seed s's batch at x[s] -> (S, B, classes) log-probabilities,
    out[s] equal (to float rounding) to networks[s](x[s]). Parameters are listed in the per-seed
    networks' order, so optimizer state maps index for index (``seed_optimizer_states``).
    """

    def __init__(self, cfg, networks):
        super().__init__()
        check_supported(cfg)
        names = [name for name, _ in networks[0].named_children()]
        for net in networks:
            if [name for name, _ in net.named_children()] != names:
                raise ValueError("networks: all must come from build_network with one config")
        self.cfg = cfg
        self.num_seeds = len(networks)
        self.layers = nn.Sequential(OrderedDict(
            (name, _seed_layer(name, [getattr(net, name) for net in networks]))
            for name in names))

    def forward(self, x):  # (S, B, C, H, W) -> (S, B, classes)
        if x.dim() != 5 or x.shape[0] != self.num_seeds:
            raise ValueError(f"expected (S={self.num_seeds}, B, C, H, W), got {tuple(x.shape)}")
        s, b, c, h, w = x.shape
        return self.layers(x.transpose(0, 1).reshape(b, s * c, h, w))

    def update_boost_strength(self):
        """beta <- beta * factor in every seed's k-winners layers (after each epoch)."""
        for m in self.modules():
            if isinstance(m, SeedKWinners):
                m.update_boost_strength()

    def unstack(self):
        """S ``build_network`` networks holding each seed's current weights and state (the
        global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            networks = [build_network(self.cfg) for _ in range(self.num_seeds)]
        for s, net in enumerate(networks):
            net.load_state_dict(self._seed_state(s))
        return [net.to(self.layers.output.weight.device) for net in networks]

    def state_dicts(self):
        """Each seed's ``state_dict`` exactly as its own network would write it."""
        return [net.state_dict() for net in self.unstack()]

    def seed_optimizer_states(self, optimizer):
        """Per-seed ``optimizer.state_dict()``s of an optimizer over ``self.parameters()``, in
        the format of the same optimizer over each seed's network (a momentum buffer of shape
        (S, ...) becomes seed s's row)."""
        state = optimizer.state_dict()
        return [{"state": {i: {key: _seed_row(value, s) for key, value in entry.items()}
                           for i, entry in state["state"].items()},
                 "param_groups": state["param_groups"]}
                for s in range(self.num_seeds)]

    def _seed_state(self, s):
        return {f"{name}.{key}": value
                for name, layer in self.layers.named_children() if hasattr(layer, "seed_state")
                for key, value in layer.seed_state(s).items()}


def _seed_row(value, s):
    if torch.is_tensor(value) and value.dim() > 0:
        return value[s].clone()
    return value


def build_seed_batch(cfg, seeds):
    """The networks that ``run_job`` would build for ``seeds`` (``torch.manual_seed(seed)``,
    then ``build_network``), as one SeedBatch."""
    networks = []
    for seed in seeds:
        torch.manual_seed(seed)
        networks.append(build_network(cfg))
    return SeedBatch(cfg, networks)


def seed_losses(log_probs, y):
    """(S,) each seed's mean NLL loss of ``log_probs`` (S, B, classes) against ``y`` (S, B);
    train on their sum: every seed then gets exactly its own gradient."""
    return F.nll_loss(log_probs.transpose(1, 2), y, reduction="none").mean(1)
