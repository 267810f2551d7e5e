"""models.Conv2d: nn.Conv2d's forward bit for bit; its sparse-gradient CPU backward gives
torch's gradients to float32 rounding, serially and in parallel chunks, and falls back to
torch's backward where it does not apply."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models.backend as backend_module
import models.conv as conv_module
from models import (Conv2d, ConvLayerConfig, HiddenLayerConfig, MaxPool2x2, NetworkConfig,
                    build_network)


def _pair(in_c, out_c, seed=0):
    torch.manual_seed(seed)
    ref = nn.Conv2d(in_c, out_c, 5)
    ours = Conv2d(in_c, out_c, 5)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _sparse_grad(shape, density, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < density)


def _backward_both(ours, ref, x, grad, input_grad):
    xs = [x.clone().requires_grad_(input_grad) for _ in range(2)]
    outs = [m(xi) for m, xi in zip((ours, ref), xs)]
    for out in outs:
        out.backward(grad)
    return outs, xs


@pytest.fixture(params=[1, 2], ids=["serial", "parallel"])
def threads(request, monkeypatch):
    """1: the serial kernels; 2: the parallel ones on every size (torch's count restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    if request.param > 1:
        monkeypatch.setattr(backend_module, "PARALLEL_MIN", 0)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("in_c, out_c, size, density", [
    (1, 32, 28, 0.02),    # Sparse CNN-2's first layer: 400 of 18,432 outputs get a gradient
    (32, 64, 12, 0.07),   # its second layer
    (30, 30, 12, 0.25),   # a dense network after pooling: at most a quarter
    (3, 5, 9, 0.4),
])
def test_gradients_equal_torch_to_rounding(in_c, out_c, size, density, threads):
    ours, ref = _pair(in_c, out_c)
    x = torch.randn(16, in_c, size, size)
    grad = _sparse_grad((16, out_c, size - 4, size - 4), density)
    (y, y_ref), (x_ours, x_ref) = _backward_both(ours, ref, x, grad, input_grad=in_c > 1)
    assert y.grad_fn.name().endswith("_Conv2dCPUBackward")  # the kernel path was taken
    assert torch.equal(y, y_ref)  # forward is F.conv2d itself
    for a, b in ((ours.weight.grad, ref.weight.grad), (ours.bias.grad, ref.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))
    if in_c > 1:
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-5,
                                   atol=1e-5 * float(x_ref.grad.abs().max()))
    else:
        assert x_ours.grad is None


def test_parallel_chunks_give_the_serial_gradients_bit_for_bit(monkeypatch):
    ours, _ = _pair(32, 64)
    x = torch.randn(24, 32, 12, 12)
    grad = _sparse_grad((24, 64, 8, 8), 0.07)
    results = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for minimum in (0, 10**12):  # every call parallel, then every call serial
            monkeypatch.setattr(backend_module, "PARALLEL_MIN", minimum)
            ours.zero_grad()
            xi = x.clone().requires_grad_()
            ours(xi).backward(grad)
            results.append((ours.weight.grad.clone(), xi.grad))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_hand_computed_gradient_of_one_output():
    """One non-zero output gradient g at (o, i, j): dW[o] = g * the input window at (i, j),
    dx = g * W[o] placed at (i, j), every other weight gradient zero."""
    conv = Conv2d(2, 3, 5)
    x = torch.randn(1, 2, 7, 7, requires_grad=True)
    grad = torch.zeros(1, 3, 3, 3)
    grad[0, 1, 2, 0] = 2.5
    conv(x).backward(grad)
    expected_w = torch.zeros_like(conv.weight)
    expected_w[1] = 2.5 * x.detach()[0, :, 2:7, 0:5]
    expected_x = torch.zeros_like(x)
    expected_x[0, :, 2:7, 0:5] = 2.5 * conv.weight.detach()[1]
    torch.testing.assert_close(conv.weight.grad, expected_w)
    torch.testing.assert_close(x.grad, expected_x)
    assert conv.bias.grad.tolist() == [0.0, 2.5, 0.0]


def test_dense_gradient_falls_back_to_torch_bit_for_bit():
    ours, ref = _pair(4, 6)
    x = torch.randn(8, 4, 10, 10)
    grad = torch.randn(8, 6, 6, 6)  # every output has a gradient: above SPARSE_MAX
    assert conv_module.SPARSE_MAX < 1.0
    _, (x_ours, x_ref) = _backward_both(ours, ref, x, grad, input_grad=True)
    assert torch.equal(ours.weight.grad, ref.weight.grad)
    assert torch.equal(x_ours.grad, x_ref.grad)


@pytest.mark.parametrize("case", ["torch backend", "no grad", "stride 2", "float64"])
def test_torch_path_where_the_kernel_does_not_apply(case, monkeypatch):
    kwargs = {"stride": 2} if case == "stride 2" else {}
    conv = Conv2d(2, 3, 5, **kwargs)
    x = torch.randn(2, 2, 12, 12)
    if case == "torch backend":
        monkeypatch.setattr(backend_module, "BACKEND", "torch")
    if case == "float64":
        conv, x = conv.double(), x.double()
    if case == "no grad":
        with torch.no_grad():
            assert conv(x).grad_fn is None
        return
    assert conv(x).grad_fn.name() == "ConvolutionBackward0"


def test_state_dict_and_repr_are_nn_conv2d_s():
    ours, ref = _pair(1, 8)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    assert repr(ours) == repr(ref)


def test_network_steps_match_the_torch_backend(monkeypatch):
    """Three SGD steps of a k-winners CNN (pooling, winners, sparse hidden weights) on the
    kernel path and on plain torch ops: the same losses and weights to float32 rounding."""
    cfg = NetworkConfig(input_shape=[1, 28, 28], num_classes=10,
                        conv=[ConvLayerConfig(channels=8, k=100), ConvLayerConfig(channels=8, k=40)],
                        hidden=HiddenLayerConfig(units=50, k=10, density=0.3))
    x, y = torch.randn(12, 1, 28, 28), torch.randint(0, 10, (12,))
    results = {}
    for backend in ("auto", "torch"):
        monkeypatch.setattr(backend_module, "BACKEND", backend)
        torch.manual_seed(3)
        net = build_network(cfg)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = F.nll_loss(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        results[backend] = (losses, net.state_dict())
    (losses, state), (ref_losses, ref_state) = results["auto"], results["torch"]
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    for key in ref_state:
        torch.testing.assert_close(state[key], ref_state[key], rtol=1e-4, atol=1e-6)


def test_pooled_gradient_is_sparse_as_the_docstring_says():
    """Behind 2x2 max pooling at most a quarter of a conv's outputs get a gradient, so the
    kernel path (SPARSE_MAX) serves every conv of the networks."""
    conv = Conv2d(1, 4, 5)
    y = conv(torch.randn(3, 1, 28, 28))
    y.retain_grad()
    MaxPool2x2()(y).sum().backward()
    fraction = float((y.grad != 0).float().mean())
    assert fraction == pytest.approx(0.25)
    assert fraction <= conv_module.SPARSE_MAX
