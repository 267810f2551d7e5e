"""models.Conv2d and its CPU kernel (models/kernels/conv.py): the path the kernel takes at each
density (``forward_path``, ``gradient_paths``), and on every path F.conv2d's outputs and torch's
gradients: to float32 rounding on the loops and the product, bit for bit where torch serves;
serially and in parallel chunks. Which path ran is seen from outside, by the torch ops it ran."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import (Conv2d, ConvLayerConfig, HiddenLayerConfig, MaxPool2x2, NetworkConfig,
                    backend, build_network, kernels)

pytestmark = pytest.mark.skipif(not backend.HAVE_NUMBA, reason="numba not installed")


def _pair(in_c, out_c, seed=0):
    torch.manual_seed(seed)
    ref = nn.Conv2d(in_c, out_c, 5)
    ours = Conv2d(in_c, out_c, 5)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _sparse_grad(shape, density, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < density)


def _sparse_input(shape, density, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * (torch.rand(shape, generator=g) < density)


def _backward_both(ours, ref, x, grad, input_grad, torch_ops):
    """(our output, torch's), (our input, torch's) after one backward pass of ``grad``, and
    the torch ops of our backward pass."""
    xs = [x.clone().requires_grad_(input_grad) for _ in range(2)]
    outs = [m(xi) for m, xi in zip((ours, ref), xs)]
    outs[1].backward(grad)
    _, ops = torch_ops(lambda: outs[0].backward(grad))
    return outs, xs, ops


def _close(ours, ref):
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.fixture(params=[1, 2], ids=["serial", "parallel"])
def threads(request, monkeypatch):
    """1: the serial kernels; 2: the parallel ones on every size (torch's count restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    if request.param > 1:
        monkeypatch.setattr(kernels.rows, "PARALLEL_MIN", 0)
    yield request.param
    torch.set_num_threads(before)


def _serial_and_parallel(fn, monkeypatch):
    """[fn() with every kernel call split over two threads, fn() with every call serial]."""
    before = torch.get_num_threads()
    results = []
    try:
        torch.set_num_threads(2)
        for minimum in (0, 10**12):
            monkeypatch.setattr(kernels.rows, "PARALLEL_MIN", minimum)
            results.append(fn())
    finally:
        torch.set_num_threads(before)
    return results


@pytest.mark.parametrize("in_c, out_c, size, density", [
    (1, 32, 28, 0.02),    # Sparse CNN-2's first layer: 400 of 18,432 outputs get a gradient
    (32, 64, 12, 0.07),   # its second layer
    (30, 30, 12, 0.25),   # a dense network after pooling: at most a quarter
    (3, 5, 9, 0.4),
])
def test_sparse_gradients_take_the_loops_and_equal_torch_to_rounding(in_c, out_c, size, density,
                                                                      threads, torch_ops):
    ours, ref = _pair(in_c, out_c)
    x = torch.randn(16, in_c, size, size)
    grad = _sparse_grad((16, out_c, size - 4, size - 4), density)
    expected = {"weight": "loop", "input": "loop"} if in_c > 1 else {"weight": "loop"}
    assert kernels.conv.gradient_paths(grad, in_c, need_input=in_c > 1) == expected
    (y, y_ref), (x_ours, x_ref), ops = _backward_both(ours, ref, x, grad, in_c > 1, torch_ops)
    assert ops["aten::convolution_backward"] == 0 and ops["aten::mm"] == 0  # the loops did it
    assert torch.equal(y, y_ref)  # a dense input: the forward is F.conv2d itself
    _close(ours.weight.grad, ref.weight.grad)
    _close(ours.bias.grad, ref.bias.grad)
    if in_c > 1:
        _close(x_ours.grad, x_ref.grad)
    else:
        assert x_ours.grad is None


@pytest.mark.parametrize("density, path", [(0.0, "sparse"), (0.02, "sparse"), (0.09, "sparse"),
                                           (0.13, "sparse"), (0.2, "sparse"), (0.35, "dense"),
                                           (0.6, "dense")])
def test_forward_path_follows_the_fraction_of_non_zero_inputs(density, path):
    """The loop over the non-zero inputs up to SPARSE_INPUT_MAX of them (k-winners leaves
    9-13%), F.conv2d above (ReLU leaves about half) and for one-channel images."""
    x = _sparse_input((16, 32, 12, 12), density)
    assert kernels.conv.SPARSE_INPUT_MAX == 0.25
    assert kernels.conv.forward_path(x) == path
    assert kernels.conv.forward_path(x[:, :1]) == "dense"


@pytest.mark.parametrize("density", [0.0, 0.02, 0.09, 0.13, 0.2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("grad", [True, False], ids=["training", "no grad"])
def test_sparse_input_forward_equals_conv2d_to_rounding(density, bias, grad, threads, torch_ops):
    """Sparse CNN-2's second layer on inputs as sparse as k-winners leaves them: no
    convolution op runs (the loop over the non-zero inputs does it), F.conv2d's outputs to
    float32 rounding."""
    torch.manual_seed(0)
    conv = Conv2d(32, 64, 5, bias=bias)
    x = _sparse_input((16, 32, 12, 12), density)
    with torch.set_grad_enabled(grad):
        y, ops = torch_ops(lambda: conv(x))
    expected = F.conv2d(x, conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
    assert ops["aten::convolution"] == 0
    assert kernels.rows.chunk_count(expected) == threads  # the loop's split over samples
    assert (y.grad_fn is not None) == grad
    torch.testing.assert_close(y.detach(), expected, rtol=1e-5, atol=1e-5)


def test_sparse_input_forward_of_single_inputs_at_the_edges():
    """One non-zero input v at (c, r, s) adds v * W[o, c, r - i, s - j] to every output (o, i, j)
    whose window holds it: corners, edges and the middle, checked by hand."""
    torch.manual_seed(1)
    conv = Conv2d(3, 4, 5)
    w, b = conv.weight.detach(), conv.bias.detach()
    for c, r, s in [(0, 0, 0), (2, 8, 8), (1, 0, 8), (1, 4, 3), (2, 8, 0)]:
        x = torch.zeros(1, 3, 9, 9)
        x[0, c, r, s] = 1.5
        assert kernels.conv.forward_path(x) == "sparse"
        with torch.no_grad():
            y = conv(x)
        expected = b.view(1, 4, 1, 1).repeat(1, 1, 5, 5)
        for i in range(max(0, r - 4), min(4, r) + 1):
            for j in range(max(0, s - 4), min(4, s) + 1):
                expected[0, :, i, j] += 1.5 * w[:, c, r - i, s - j]
        torch.testing.assert_close(y, expected)


def test_sparse_input_forward_adds_many_channels_at_one_position(torch_ops):
    """The loop adds the non-zero channels of one input position four at a time, then one at a
    time: positions with all 32 channels non-zero (eight groups), 7 (a group and three), 3
    and 1, at the middle and the edges, give F.conv2d's outputs to rounding."""
    torch.manual_seed(3)
    conv = Conv2d(32, 64, 5)
    x = torch.zeros(4, 32, 12, 12)
    for channels, r, s in [(32, 5, 5), (7, 0, 0), (3, 11, 6), (1, 6, 11), (32, 11, 11)]:
        x[:, :channels, r, s] = torch.rand(4, channels) + 0.5
    assert kernels.conv.forward_path(x) == "sparse"
    with torch.no_grad():
        y, ops = torch_ops(lambda: conv(x))
    assert ops["aten::convolution"] == 0
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias), rtol=1e-5, atol=1e-5)


def test_sparse_input_forward_parallel_chunks_equal_serial_bit_for_bit(monkeypatch):
    conv = Conv2d(32, 64, 5)
    x = _sparse_input((24, 32, 12, 12), 0.1)
    with torch.no_grad():
        parallel, serial = _serial_and_parallel(lambda: conv(x), monkeypatch)
    assert torch.equal(parallel, serial)


@pytest.mark.parametrize("case", ["dense input", "one channel"])
def test_forward_falls_back_to_conv2d_bit_for_bit(case, torch_ops):
    """Inputs above SPARSE_INPUT_MAX non-zero (ReLU's half) and one-channel images (no sum over
    channels to skip) go to F.conv2d: outputs equal bit for bit."""
    in_c = 1 if case == "one channel" else 30
    ours, ref = _pair(in_c, 8)
    x = torch.randn(8, in_c, 12, 12).clamp(min=0) * (1.0 if case == "dense input" else 0.0)
    x[:, :, 0, 0] = 1.0  # not all zero
    assert kernels.conv.forward_path(x) == "dense"
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            y, ops = torch_ops(lambda: ours(x))
            assert torch.equal(y, ref(x)) and ops["aten::convolution"] == 1


def test_nan_input_propagates_as_in_conv2d():
    conv = Conv2d(4, 2, 3)
    x = torch.zeros(1, 4, 6, 6)
    x[0, 1, 2, 2] = float("nan")
    assert kernels.conv.forward_path(x) == "sparse"
    with torch.no_grad():
        y = conv(x)
    assert torch.equal(torch.isnan(y), torch.isnan(F.conv2d(x, conv.weight, conv.bias)))
    assert int(torch.isnan(y).sum()) == 2 * 9


def test_eval_of_a_kwinners_network_matches_the_torch_backend(monkeypatch, torch_ops):
    """A trained-size k-winners CNN in evaluation, kernel path against plain torch ops on the
    same inputs: the same winners in both k-winners layers and the same predictions, log
    probabilities to float32 rounding (the second convolution takes the sparse-input loop:
    one convolution op ran, the first layer's, against two on torch ops)."""
    cfg = NetworkConfig(input_shape=[1, 28, 28], num_classes=10,
                        conv=[ConvLayerConfig(channels=32, k=400),
                              ConvLayerConfig(channels=64, k=400)],
                        hidden=HiddenLayerConfig(units=300, k=30, density=0.3))
    torch.manual_seed(4)
    net = build_network(cfg).eval()
    x = torch.rand(64, 1, 28, 28)
    results = {}
    for mode in ("auto", "torch"):
        monkeypatch.setattr(backend, "BACKEND", mode)
        winners = []
        hooks = [m.register_forward_hook(lambda m, i, o: winners.append(o != 0))
                 for m in net.modules() if type(m).__name__ in ("KWinners", "KWinners2d")]
        with torch.inference_mode():
            out, ops = torch_ops(lambda: net(x))
        results[mode] = (out, winners, ops["aten::convolution"])
        for h in hooks:
            h.remove()
    (out, winners, convs), (ref_out, ref_winners, ref_convs) = results["auto"], results["torch"]
    assert (convs, ref_convs) == (1, 2)
    assert len(winners) == 3 and all(torch.equal(a, b) for a, b in zip(winners, ref_winners))
    assert torch.equal(out.argmax(1), ref_out.argmax(1))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)


def test_parallel_chunks_give_the_serial_gradients_bit_for_bit(monkeypatch):
    ours, _ = _pair(32, 64)
    x = torch.randn(24, 32, 12, 12)
    grad = _sparse_grad((24, 64, 8, 8), 0.07)

    def gradients():
        ours.zero_grad()
        xi = x.clone().requires_grad_()
        ours(xi).backward(grad)
        return ours.weight.grad.clone(), xi.grad

    (w_par, x_par), (w_ser, x_ser) = _serial_and_parallel(gradients, monkeypatch)
    assert torch.equal(w_par, w_ser) and torch.equal(x_par, x_ser)


@pytest.mark.parametrize("input_grad", [False, True], ids=["first layer", "input gradient too"])
@pytest.mark.parametrize("density, weight_path", [(0.02, "loop"), (0.25, "product"),
                                                  (1.0, "product")])
def test_one_channel_weight_gradient_loop_or_product(input_grad, density, weight_path,
                                                     torch_ops):
    """The first layer (one input channel): its weight gradient comes from the loop over the
    non-zero gradients when the first sample's gradient is at most ONE_CHANNEL_LOOP_MAX
    non-zero (behind k-winners), else from one matrix product over the input's patches; both
    equal oneDNN's to float32 rounding. An input gradient, when asked for, comes from the loop
    (or from torch when the gradient is dense)."""
    ours, ref = _pair(1, 32)
    x = torch.randn(8, 1, 28, 28)
    grad = _sparse_grad((8, 32, 24, 24), density)
    input_path = "torch" if density > kernels.conv.SPARSE_MAX else "loop"
    expected = {"weight": weight_path, **({"input": input_path} if input_grad else {})}
    assert kernels.conv.gradient_paths(grad, 1, need_input=input_grad) == expected
    _, (x_ours, x_ref), ops = _backward_both(ours, ref, x, grad, input_grad, torch_ops)
    assert ops["aten::mm"] == (weight_path == "product")
    assert ops["aten::convolution_backward"] == (input_grad and input_path == "torch")
    _close(ours.weight.grad, ref.weight.grad)
    if input_grad:
        _close(x_ours.grad, x_ref.grad)


@pytest.mark.parametrize("density, path", [(0.3, "product"), (0.02, "loop")])
def test_one_channel_weight_gradient_by_hand(density, path):
    """dW[o, 0, di, dj] = sum over samples and outputs (i, j) of g[b, o, i, j] x[b, 0, i + di,
    j + dj], on a non-square input that is a non-contiguous view, against the sum written out,
    by the product and by the loop."""
    torch.manual_seed(4)
    x = torch.randn(3, 1, 11, 8).transpose(2, 3)  # (3, 1, 8, 11), strides not row-major
    grad = _sparse_grad((3, 2, 6, 7), density, seed=5)
    assert kernels.conv.gradient_paths(grad, 1, need_input=False) == {"weight": path}
    expected = torch.zeros(2, 1, 3, 5, dtype=torch.float64)
    for b in range(3):
        for o in range(2):
            for i in range(6):
                for j in range(7):
                    expected[o, 0] += float(grad[b, o, i, j]) * x[b, 0, i:i + 3, j:j + 5].double()
    conv = Conv2d(1, 2, (3, 5), bias=False)
    conv(x).backward(grad)
    torch.testing.assert_close(conv.weight.grad, expected.float(), rtol=1e-5, atol=1e-5)


def test_hand_computed_gradient_of_one_output():
    """One non-zero output gradient g at (o, i, j): dW[o] = g * the input window at (i, j),
    dx = g * W[o] placed at (i, j), every other weight gradient zero."""
    conv = Conv2d(2, 3, 5)
    x = torch.randn(1, 2, 7, 7, requires_grad=True)
    grad = torch.zeros(1, 3, 3, 3)
    grad[0, 1, 2, 0] = 2.5
    assert kernels.conv.gradient_paths(grad, 2) == {"input": "loop", "weight": "loop"}
    conv(x).backward(grad)
    expected_w = torch.zeros_like(conv.weight)
    expected_w[1] = 2.5 * x.detach()[0, :, 2:7, 0:5]
    expected_x = torch.zeros_like(x)
    expected_x[0, :, 2:7, 0:5] = 2.5 * conv.weight.detach()[1]
    torch.testing.assert_close(conv.weight.grad, expected_w)
    torch.testing.assert_close(x.grad, expected_x)
    assert conv.bias.grad.tolist() == [0.0, 2.5, 0.0]


def test_dense_gradient_falls_back_to_torch_bit_for_bit(torch_ops):
    ours, ref = _pair(4, 6)
    x = torch.randn(8, 4, 10, 10)
    grad = torch.randn(8, 6, 6, 6)  # every output has a gradient: above SPARSE_MAX
    assert kernels.conv.gradient_paths(grad, 4) == {"input": "torch", "weight": "torch"}
    _, (x_ours, x_ref), ops = _backward_both(ours, ref, x, grad, True, torch_ops)
    assert ops["aten::convolution_backward"] == 1  # one call for both gradients
    assert torch.equal(ours.weight.grad, ref.weight.grad)
    assert torch.equal(x_ours.grad, x_ref.grad)


@pytest.mark.parametrize("case", ["torch backend", "no grad", "stride 2", "float64"])
def test_torch_path_where_the_kernel_does_not_apply(case, monkeypatch):
    kwargs = {"stride": 2} if case == "stride 2" else {}
    conv = Conv2d(2, 3, 5, **kwargs)
    x = torch.randn(2, 2, 12, 12)
    if case == "torch backend":
        monkeypatch.setattr(backend, "BACKEND", "torch")
    if case == "float64":
        conv, x = conv.double(), x.double()
    if case == "no grad":
        with torch.no_grad():
            assert conv(x).grad_fn is None
        return
    assert conv(x).grad_fn.name() == "ConvolutionBackward0"


def test_kernel_refuses_an_input_with_the_wrong_channel_count():
    """The loops do not check their bounds: the entry does, as F.conv2d would."""
    with pytest.raises(ValueError, match="expects 3 input channels"):
        kernels.conv.conv2d(torch.zeros(1, 4, 9, 9), torch.zeros(2, 3, 5, 5))


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
    for mode in ("auto", "torch"):
        monkeypatch.setattr(backend, "BACKEND", mode)
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
        results[mode] = (losses, net.state_dict())
    (losses, state), (ref_losses, ref_state) = results["auto"], results["torch"]
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    for key in ref_state:
        torch.testing.assert_close(state[key], ref_state[key], rtol=1e-4, atol=1e-6)


def test_pooled_gradient_is_sparse_as_the_docstring_says():
    """Behind 2x2 max pooling at most a quarter of a conv's outputs get a gradient, so the
    loops (at most SPARSE_MAX non-zero) serve every conv of the networks."""
    conv = Conv2d(1, 4, 5)
    y = conv(torch.randn(3, 1, 28, 28))
    y.retain_grad()
    MaxPool2x2()(y).sum().backward()
    fraction = float((y.grad != 0).float().mean())
    assert fraction == pytest.approx(0.25)
    assert kernels.conv.gradient_paths(y.grad, 4) == {"input": "loop", "weight": "loop"}
