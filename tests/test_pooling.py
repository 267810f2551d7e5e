"""MaxPool2x2 gives F.max_pool2d(x, 2)'s outputs and gradients bit for bit, on both backends."""

import pytest
import torch
import torch.nn.functional as F

from models import MaxPool2x2, backend, kernels


@pytest.fixture(params=["auto", "torch"])
def mode(request, monkeypatch):
    monkeypatch.setattr(backend, "BACKEND", request.param)
    return request.param


@pytest.mark.parametrize("shape", [(4, 32, 24, 24), (3, 2, 7, 5), (1, 1, 2, 2), (64, 64, 8, 8)])
def test_outputs_and_gradients_equal_max_pool2d(shape, mode, torch_ops):
    torch.manual_seed(0)
    x = torch.randn(shape)
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, ops = torch_ops(lambda: MaxPool2x2()(ours))
    assert ops["aten::max_pool2d"] == (mode == "torch")  # "auto": the kernel pooled
    y.backward(grad)
    F.max_pool2d(ref, 2).backward(grad)
    assert torch.equal(y, F.max_pool2d(x, 2))
    assert torch.equal(ours.grad, ref.grad)
    # each window sends its gradient to exactly one position (a trailing odd row/column: none)
    assert int((ours.grad != 0).sum()) == int((grad != 0).sum())


def test_ties_nan_and_minus_inf_follow_max_pool2d(mode):
    x = torch.tensor([[[[1.0, 1.0, float("nan"), 0.0],
                        [1.0, 0.5, 2.0, float("nan")],
                        [-float("inf"), -float("inf"), 3.0, 3.0],
                        [-float("inf"), -float("inf"), 3.0, 3.0]]]])
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = MaxPool2x2()(ours)
    y.backward(torch.ones_like(y))
    F.max_pool2d(ref, 2).backward(torch.ones_like(y))
    assert torch.equal(y.isnan(), F.max_pool2d(x, 2).isnan())
    assert torch.equal(y.nan_to_num(), F.max_pool2d(x, 2).nan_to_num())
    assert torch.equal(ours.grad, ref.grad)  # first of tied maxima; the last NaN of a window


def test_parallel_kernel_matches_the_serial_one(monkeypatch):
    x = torch.randn(64, 32, 24, 24, requires_grad=True)
    grad = torch.randn(64, 32, 12, 12)
    results = []
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for minimum in (0, 10**12):
            monkeypatch.setattr(kernels.rows, "PARALLEL_MIN", minimum)
            x.grad = None
            y = MaxPool2x2()(x)
            y.backward(grad)
            results.append((y.detach(), x.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_inference_mode_and_other_dtypes():
    x = torch.randn(2, 3, 6, 6)
    with torch.inference_mode():
        assert torch.equal(MaxPool2x2()(x), F.max_pool2d(x, 2))
    assert torch.equal(MaxPool2x2()(x.double()), F.max_pool2d(x.double(), 2))
