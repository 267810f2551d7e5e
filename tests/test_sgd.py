"""The one-pass SGD step (experiments/train/sgd.py) against torch.optim.SGD: the same weights and
momentum buffers bit for bit, the kernel really serving the steps, torch's step elsewhere, and
checkpoints that move between the two."""

import copy

import pytest
import torch
import torch.nn.functional as F

from experiments.train import sgd


def model_and_data():
    """A small network with tensors of several sizes (odd lengths, one above the parallel
    threshold) and a fixed stream of batches."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 7, 5), torch.nn.Flatten(),
                                torch.nn.Linear(7 * 24 * 24, 13), torch.nn.ReLU(),
                                torch.nn.Linear(13, 10), torch.nn.LogSoftmax(dim=1))
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 1, 28, 28, generator=generator),
                torch.randint(0, 10, (8,), generator=generator)) for _ in range(6)]
    return model, batches


def train(optimizer_class, steps=6, state=None, **options):
    """Weights and buffers after ``steps`` steps, the learning rate decaying as in a run."""
    model, batches = model_and_data()
    optimizer = optimizer_class(model.parameters(), **options)
    if state is not None:
        model.load_state_dict(state[0])
        optimizer.load_state_dict(copy.deepcopy(state[1]))  # as from a file: buffers not shared
    for i, (x, y) in enumerate(batches[:steps]):
        for group in optimizer.param_groups:
            group["lr"] = options["lr"] * 0.8 ** i
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def same_state(a, b):
    (model_a, opt_a), (model_b, opt_b) = a, b
    weights = all(torch.equal(x, y) for x, y in zip(model_a.parameters(), model_b.parameters()))
    buffers = all(torch.equal(opt_a.state[p]["momentum_buffer"], opt_b.state[q]["momentum_buffer"])
                  for p, q in zip(model_a.parameters(), model_b.parameters()))
    return weights and buffers


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("momentum", [0.9, 0.5])
def test_the_one_pass_step_equals_torch_bit_for_bit(momentum, threads, monkeypatch):
    calls = []
    real_run_rows = sgd.run_rows
    monkeypatch.setattr(sgd, "run_rows", lambda *a: (calls.append(a[-1]), real_run_rows(*a)))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # for the references too: gradients depend on the threads
    try:
        fused = train(sgd.SGD, lr=0.01, momentum=momentum)
        references = [train(torch.optim.SGD, lr=0.01, momentum=momentum, foreach=foreach)
                      for foreach in (True, False)]
    finally:
        torch.set_num_threads(before)
    assert all(same_state(fused, reference) for reference in references)
    parameters = len(list(fused[0].parameters()))
    assert len(calls) == 5 * parameters  # every step after the first, which creates the buffers
    assert max(calls) == threads  # the large hidden weight splits over the threads


def test_a_step_the_kernel_does_not_cover_is_torchs_own(monkeypatch):
    def fail(*args):
        raise AssertionError("the kernel ran")
    monkeypatch.setattr(sgd, "run_rows", fail)
    for options in ({"momentum": 0.9, "weight_decay": 0.01}, {"momentum": 0.9, "nesterov": True},
                    {"momentum": 0.9, "dampening": 0.1}, {"momentum": 0.0}):
        model, _ = train(sgd.SGD, lr=0.01, **options)
        expected, _ = train(torch.optim.SGD, lr=0.01, **options)
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected.parameters()))


def test_checkpoints_move_between_torch_and_the_one_pass_step():
    for first, second in ((torch.optim.SGD, sgd.SGD), (sgd.SGD, torch.optim.SGD)):
        model, optimizer = train(first, steps=3, lr=0.01, momentum=0.9)
        state = (model.state_dict(), optimizer.state_dict())
        model, optimizer = train(second, steps=3, state=state, lr=0.01, momentum=0.9)
        resumed = train(torch.optim.SGD, steps=3, state=state, lr=0.01, momentum=0.9)
        assert same_state((model, optimizer), resumed)
