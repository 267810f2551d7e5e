"""models.sparse_inference held to the plain model: the same winners in every k-winners layer
(but where the k-th place ties within float32 rounding), the same predictions and logits to
float tolerance, on the shipped networks and real test images; its kernels held to torch's
ops; its edge cases and its errors. (The winner comparison is benchmarks/check_inference.py's,
which lists the differing images of whole noise sweeps.)"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models.backend as backend
from data import DataConfig
from data.mnist import MNISTDataset
from experiments.cli import load_experiment
from experiments.train.sweep import NoiseSweep
from models import (ConvLayerConfig, HiddenLayerConfig, KWinners, MaxPool2x2, NetworkConfig,
                    build_network, load_pretrained, pretrained_info, sparse_inference)
from models.costs import layer_multiply_adds
from models.kernels import kwinners as kwinners_kernel, sparse_conv, sparse_linear
from models.pretrained import available

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_inference",
                                               REPO / "benchmarks" / "check_inference.py")
check_inference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_inference)
_spec = importlib.util.spec_from_file_location("bench_inference",
                                               REPO / "benchmarks" / "bench_inference.py")
bench_inference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_inference)
TIE = 1e-5  # relative: boosted scores this close to the k-th are a tie within rounding


@pytest.fixture(scope="module")
def mnist(mnist_root):
    """300 real test images, clean and at 50% noise."""
    dataset = MNISTDataset(DataConfig(root=str(mnist_root), test_limit=300))
    clean, _ = dataset.test_set()
    noisy, _ = dataset.noisy_test_set(0.5, torch.Generator().manual_seed(0))
    return torch.cat([clean, noisy])


def block_check(net, engine, x):
    """Each block of the engine fed the plain model's input to that block: per k-winners
    layer, the rows whose winners differ other than in a tie; and the largest output
    difference over rows whose winners agree."""
    seen, logits = check_inference.kwinners_inputs(net, x)
    outputs = engine.layer_outputs(x)
    report = {}
    h, density = x, None
    for block in engine.blocks:
        out = block(h.contiguous(), density)
        if block.name in seen:
            pre, plain = seen[block.name]
            gaps = check_inference.winner_gaps(block.activation, pre, plain != 0, out != 0)
            untied = int((gaps > TIE).sum())  # NaN (no difference) compares False
            same = ((plain != 0) == (out != 0)).reshape(len(x), -1).all(1)
            agree = (plain - out).reshape(len(x), -1)[same]
            diff = agree.abs().max().item() if len(agree) else float("inf")
            report[block.name] = (untied, diff)
            h = plain
        else:
            h = out
        density = None
    return report, logits, outputs.popitem()[1]


@pytest.mark.parametrize("name", available())
def test_the_engine_keeps_the_models_winners_and_predictions(name, mnist):
    net = load_pretrained(name)
    engine = sparse_inference(net)
    report, logits, engine_logits = block_check(net, engine, mnist)
    for layer, (untied, diff) in report.items():
        assert untied == 0, f"{layer}: {untied} rows with other winners than the model's"
        assert diff < 1e-4, f"{layer}: outputs differ by {diff}"
    assert torch.equal(logits.argmax(1), engine_logits.argmax(1))
    close = (logits - engine_logits).abs().amax(1) < 1e-4
    assert close.float().mean() >= 0.99  # the rest: a unit that tied at some k-th place


def test_only_layers_with_sparse_weights_take_the_stored_weights_kernel(mnist):
    # a dense layer goes to MKL or the gather however close the products' counts: Dense
    # CNN-1's 4,320 x 1,000 hidden layer was 0.91x of MKL in the stored-weights kernel
    x = mnist[:256].contiguous()  # clean images
    for name, sparse_hidden in (("sparse_cnn2", True), ("dense_cnn2", False),
                                ("sparse_cnn2_w1", False)):
        engine = sparse_inference(load_pretrained(name))
        with torch.inference_mode():
            engine(x)
        paths = engine.paths()
        hidden, output = list(paths.values())[-2:]
        assert (hidden == "sparse_weights") == sparse_hidden, (name, paths)
        assert output != "sparse_weights", (name, paths)


def test_a_wrong_winner_rule_is_caught(mnist):
    net = load_pretrained("sparse_cnn2")
    engine = sparse_inference(net)
    block = engine.blocks[0]
    block.boost = block.boost * 0 + 1  # planted: winners by the raw values, no boosting
    report, _, _ = block_check(net, engine, mnist)
    assert report["kwinners1"][0] > 100


def test_the_shipped_sparse_cnn2_reproduces_its_recorded_clean_count_through_the_engine(mnist_root):
    info = pretrained_info("sparse_cnn2")
    dataset = MNISTDataset(DataConfig(root=str(mnist_root)))
    sweep = NoiseSweep(dataset, [0.0], info["seed"], torch.device("cpu"))
    engine = sparse_inference(load_pretrained("sparse_cnn2"))
    correct = sweep.run(engine, info["test_batch_size"], torch.device("cpu"))
    assert correct["0.00"] == info["record"]["noise_correct"]["0.00"]


def test_edge_cases_batch_one_zero_images_and_a_strided_input(mnist):
    net = load_pretrained("sparse_cnn2")
    engine = sparse_inference(net)
    with torch.no_grad():
        plain = net(mnist[:8])
        assert torch.allclose(engine(mnist[:1]), plain[:1], atol=1e-4)
        zeros = torch.zeros(4, 1, 28, 28)
        assert torch.allclose(engine(zeros), net(zeros), atol=1e-4)
        strided = torch.cat([mnist[:8], mnist[:8]], dim=3)[..., ::2]  # non-contiguous
        assert not strided.is_contiguous()
        assert torch.allclose(engine(strided), net(strided), atol=1e-4)
        channels_last = mnist[:8].to(memory_format=torch.channels_last)
        assert torch.allclose(engine(channels_last), plain, atol=1e-4)


def tiny(**kw):
    torch.manual_seed(0)
    return build_network(NetworkConfig(**kw)).eval()


def test_k_equal_to_n_and_a_relu_network(mnist):
    every = tiny(conv=[ConvLayerConfig(4, k=4 * 12 * 12)], hidden=HiddenLayerConfig(20, k=20),
                 k_inference_factor=1.5, boost_strength=1.5)
    relu = tiny(conv=[ConvLayerConfig(4), ConvLayerConfig(5)], hidden=HiddenLayerConfig(20))
    for net in (every, relu):
        with torch.no_grad():
            assert torch.allclose(sparse_inference(net)(mnist[:16]), net(mnist[:16]), atol=1e-5)
    outputs = sparse_inference(every).layer_outputs(mnist[:16])
    assert (outputs["kwinners1"] != 0).float().mean() > 0.99  # every unit wins


@pytest.mark.parametrize("name", ["dense_cnn2_dr05", "sparse_cnn2", "super_sparse_cnn2"])
def test_speech_commands_networks_with_batch_norm_and_dropout(name):
    job = load_experiment(REPO / "configs" / "gsc_table2.yaml").jobs[name]
    torch.manual_seed(1)
    net = build_network(job.model)
    with torch.no_grad():  # give the BatchNorms running statistics of their own
        net.train()
        net(torch.randn(64, *job.model.input_shape))
    net.eval()
    x = torch.randn(32, *job.model.input_shape)
    engine = sparse_inference(net)
    with torch.no_grad():
        assert torch.allclose(engine(x), net(x), atol=1e-4)
        assert torch.equal(engine(x).argmax(1), net(x).argmax(1))


def test_other_backends_get_the_model_itself(mnist, monkeypatch):
    net = load_pretrained("sparse_cnn2")
    engine = sparse_inference(net)
    with torch.no_grad():
        want = net.double()(mnist[:8].double())  # engine.reference is net: now float64
        assert torch.equal(engine(mnist[:8].double()), want)
        net.float()
    monkeypatch.setattr(backend, "BACKEND", "torch")
    with torch.no_grad():
        assert torch.equal(engine(mnist[:8]), net(mnist[:8]))


def test_training_mode_and_unknown_layers_fail_with_one_clear_error():
    net = tiny(conv=[ConvLayerConfig(4, k=60)], hidden=HiddenLayerConfig(20, k=5))
    with pytest.raises(ValueError, match="training mode"):
        sparse_inference(net.train())
    engine = sparse_inference(net.eval())
    with pytest.raises(RuntimeError, match="eval-only"):
        engine.train()
    odd = nn.Sequential(nn.Conv2d(1, 4, 5), nn.Tanh())
    with pytest.raises(TypeError, match="'1' is a Tanh"):
        sparse_inference(odd.eval())
    with pytest.raises(ValueError, match="expected"):
        engine(torch.zeros(2, 3, 28, 28))


@pytest.mark.parametrize("channels, out_channels, height, kernel, shifted", [
    (1, 30, 14, 5, True), (1, 20, 17, 5, True), (7, 64, 14, 5, False), (16, 20, 14, 5, False),
    (70, 64, 10, 5, True), (7, 64, 14, 3, False), (70, 20, 10, 3, True)])
def test_the_conv_kernel_is_conv_then_pooling(channels, out_channels, height, kernel, shifted):
    # several channels: more than 64 (two words of channel bits), 3-wide kernels
    torch.manual_seed(channels + height + kernel)
    x = torch.randn(5, channels, height, 13)
    x[torch.rand_like(x) < 0.8] = 0.0
    x[:, :, :6] = 0.0  # background rows: pooled rows that no pixel reaches
    offsets = torch.zeros(5)
    if shifted:  # a background that is not 0
        offsets = torch.randn(5)
        x = torch.where(x == 0, offsets.view(-1, 1, 1, 1), x)
    conv = nn.Conv2d(channels, out_channels, kernel)
    layout = sparse_conv.ConvLayout(conv.weight.detach(), conv.bias.detach())
    got = sparse_conv.conv_pool(x, offsets.numpy(), layout)
    with torch.no_grad():
        want = F.max_pool2d(conv(x), 2)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("out_channels, width, kernel", [
    (30, 28, 5), (64, 32, 5), (40, 15, 5), (20, 70, 5), (32, 17, 3)])
def test_the_one_channel_kernel_is_conv_then_pooling(out_channels, width, kernel):
    # 40 channels: a second, zero-padded group of 32; width 15: an odd number of pooled
    # columns (the last block's second half is not stored); width 70: wider than a word of
    # column bits (every block visited); 3-wide kernels; one sample all background
    torch.manual_seed(out_channels + width)
    x = torch.randn(6, 1, 20, width)
    offsets = torch.randn(6)
    x = torch.where(torch.rand_like(x) < 0.8, offsets.view(-1, 1, 1, 1), x)
    x[:, :, :7] = offsets.view(-1, 1, 1, 1)  # background rows
    x[2] = offsets[2]
    conv = nn.Conv2d(1, out_channels, kernel)
    layout = sparse_conv.ConvLayout(conv.weight.detach(), conv.bias.detach())
    got = sparse_conv.conv_pool(x, offsets.numpy(), layout)
    with torch.no_grad():
        want = F.max_pool2d(conv(x), 2)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got[2], want[2], atol=1e-5) and (got[2] == got[2, :, :1, :1]).all()
    found = sparse_conv.conv_pool(x, None, layout)  # each sample's minimum, found inside
    assert torch.equal(found, sparse_conv.conv_pool(x, sparse_conv.background(x)[0], layout))
    lows = np.array([sparse_conv._minimum(row) for row in x.view(6, -1).numpy()])
    assert np.array_equal(lows, x.view(6, -1).min(1).values.numpy())  # 20 x width values
    x[3, 0, 10, 5] = float("nan")  # a NaN pixel: NaN in the windows that hold it, as conv2d
    with torch.no_grad():
        want = F.max_pool2d(conv(x), 2)
    for offsets in (None, sparse_conv.background(x)[0]):
        assert torch.allclose(sparse_conv.conv_pool(x, offsets, layout), want, atol=1e-5,
                              equal_nan=True)


@pytest.mark.parametrize("channels, out_channels, width, kernel", [
    (1, 40, 15, 5), (1, 32, 17, 3), (1, 20, 70, 5), (7, 64, 13, 5), (7, 40, 13, 3),
    (70, 64, 9, 5)])
def test_the_avx512_and_avx2_register_blocks_add_the_same_sums(channels, out_channels, width,
                                                               kernel):
    # the conv kernels take wider register blocks where the CPU has AVX-512 (simd.AVX512):
    # both kinds are run here on every machine, and must agree bit for bit (the same sums in
    # the same order), odd pooled widths, padded channel groups (40 outputs: 32 + 16 for
    # several channels), two words of channel bits and all-background rows too
    torch.manual_seed(channels + width)
    x = torch.randn(3, channels, 16, width)
    x[torch.rand_like(x) < 0.8] = 0.0
    x[:, :, :6] = 0.0
    conv = nn.Conv2d(channels, out_channels, kernel)
    layout = sparse_conv.ConvLayout(conv.weight.detach(), conv.bias.detach())
    kh = kw = kernel
    ho, wo = 16 - kh + 1, width - kw + 1
    padded = layout.bias.shape[0]
    got = {}
    for wide in (True, False):
        out = np.full((3, out_channels, ho // 2, wo // 2), np.nan, np.float32)
        for b in range(3):
            if channels == 1:
                image = x[b, 0].reshape(-1).numpy()
                buffers = sparse_conv._one_channel_buffers(16, width, kh, kw, padded)
                sparse_conv._one_channel_sample(image, 16, width, np.float32(0.0),
                                                layout.w_block.reshape(-1), kh, kw, layout.bias,
                                                layout.w_sum, *buffers, out[b].reshape(-1), wide)
            else:
                image = x[b].reshape(channels, -1).numpy()
                buffers = sparse_conv._channels_buffers(channels, 16, width, kh, kw, padded)
                sparse_conv._channels_sample(image, 16, width, np.float32(0.0), layout.w_taps,
                                             layout.bias, layout.w_sum, kh, kw, *buffers,
                                             out[b].reshape(-1), wide)
        got[wide] = out
    assert np.array_equal(got[True], got[False])
    with torch.no_grad():
        want = F.max_pool2d(conv(x), 2).numpy()
    assert np.allclose(got[False], want, atol=1e-5)


@pytest.mark.parametrize("channels, k, threads", [
    (1, 40, 1), (1, 40, 2), (7, 30, 1), (7, 30, 2), (1, 10_000, 1)])
def test_k_winners_inside_the_conv_kernel_are_k_winners_after_it(channels, k, threads):
    # the same output bit for bit as pooling the batch, then k_winners_eval: ties included
    # (all-background samples pool to one value per channel), parallel slices (each with its
    # own buffer and first probe), and k >= n (every unit wins)
    torch.manual_seed(channels + k)
    x = torch.randn(300, channels, 16, 16)
    x[torch.rand_like(x) < 0.8] = 0.0
    x[:40] = 0.0  # background samples
    conv = nn.Conv2d(channels, 20, 5)
    layout = sparse_conv.ConvLayout(conv.weight.detach(), conv.bias.detach())
    boost = (torch.rand(20) + 0.5).numpy()
    offsets = np.zeros(300, np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pooled = sparse_conv.conv_pool(x, offsets, layout)
        want = kwinners_kernel.k_winners_eval(pooled.view(300, -1), boost, 36, k)
        hint = np.full(1, -1, np.int64)
        got = sparse_conv.conv_pool(x, offsets, layout, (boost, k, hint))
        again = sparse_conv.conv_pool(x, offsets, layout, (boost, k, hint))  # with a probe
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got.view(300, -1), want) and torch.equal(again, got)
    assert ((got.view(300, -1) != 0).sum(1) <= min(k, 720)).all()
    assert hint[0] >= 0 or k >= 720
    with pytest.raises(ValueError, match="boost factors"):
        sparse_conv.conv_pool(x, offsets, layout, (boost[:5], k, hint))


@pytest.mark.parametrize("threads", [1, 2])
def test_two_conv_blocks_in_one_kernel_equal_them_one_after_the_other(threads):
    # conv_pair: the first layer's k-winners go straight into the second layer, one sample
    # at a time; the same output bit for bit as the two calls (and the same first probes
    # carried to the next call), all-background images included
    torch.manual_seed(threads)
    x = torch.rand(200, 1, 20, 20)
    x[torch.rand_like(x) < 0.7] = 0.0
    x[:30] = 0.5  # background images: every pooled value of a channel equal, ties
    one = sparse_conv.ConvLayout(torch.randn(24, 1, 5, 5), torch.randn(24))
    two = sparse_conv.ConvLayout(torch.randn(40, 24, 3, 3) * 0.2, torch.randn(40))
    boost1, boost2 = (torch.rand(24) + 0.5).numpy(), (torch.rand(40) + 0.5).numpy()
    hints = [np.full(1, -1, np.int64) for _ in range(4)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        middle = sparse_conv.conv_pool(x, None, one, (boost1, 90, hints[0]))
        want = sparse_conv.conv_pool(middle, np.zeros(200, np.float32), two,
                                     (boost2, 50, hints[1]))
        got = sparse_conv.conv_pair(x, (one, (boost1, 90, hints[2])),
                                    (two, (boost2, 50, hints[3])))
    finally:
        torch.set_num_threads(before)
    assert got.shape == (200, 40, 3, 3) and torch.equal(got, want)
    assert ((got.view(200, -1) != 0).sum(1) <= 50).all()
    assert hints[2][0] >= 0 and hints[3][0] >= 0
    with pytest.raises(ValueError, match="do not chain"):
        sparse_conv.conv_pair(x, (two, (boost2, 50, hints[2])), (one, (boost1, 90, hints[3])))


def test_the_engine_pairs_the_first_two_conv_blocks_of_a_shipped_network(mnist):
    # Sparse CNN-2: its first two blocks in one kernel, the output equal to the blocks run
    # one after the other (clean and noisy images); layer_outputs, which needs the first
    # block's output, and a second block on a dense input (ReLU's) do not pair
    engine = sparse_inference(load_pretrained("sparse_cnn2"))
    x = mnist
    paired = engine(x)
    engine.pair_convs = False
    assert torch.equal(paired, engine(x))
    assert engine.blocks[0].pairs_with(engine.blocks[1], x)
    assert not engine.blocks[1].pairs_with(engine.blocks[2], engine.layer_outputs(x)["kwinners1"])
    dense = sparse_inference(load_pretrained("dense_cnn2"))
    assert not dense.blocks[0].pairs_with(dense.blocks[1], x)


def test_the_block_transpose_moves_each_value_and_stores_only_the_rows_asked_for():
    numba = pytest.importorskip("numba")
    from models.kernels.simd import vtranspose16

    @numba.njit
    def transpose(src, s0, s_stride, dst, d0, d_stride, rows):
        vtranspose16(src, s0, s_stride, dst, d0, d_stride, rows)

    src = np.arange(40 * 37, dtype=np.float32)
    for rows in (16, 13, 1):
        dst = np.full(50 * 23, -1.0, np.float32)
        transpose(src, 5, 37, dst, 3, 23, rows)
        block = src[5:5 + 16 * 37].reshape(16, 37)[:, :16]
        written = dst[3:3 + 16 * 23].reshape(16, 23)
        assert np.array_equal(written[:rows, :16], block.T[:rows])
        assert (written[rows:] == -1).all() and (written[:, 16:] == -1).all()
        assert (dst[:3] == -1).all() and (dst[3 + 16 * 23:] == -1).all()


def test_the_kernels_buffers_and_weights_start_cache_lines():
    # numba aligns its arrays to 32 bytes and numpy to 16; a 16-lane load from a buffer that
    # does not start a 64-byte line reads two lines (Sparse CNN-2's conv1 8.1 against 5.8 us)
    numba = pytest.importorskip("numba")
    from models.kernels.simd import aligned, aligned_empty

    @numba.njit
    def addresses(sizes):
        out = np.empty((len(sizes), 2), np.int64)
        for t in range(len(sizes)):
            a = aligned_empty(sizes[t])
            out[t, 0], out[t, 1] = a.ctypes.data % 64, a.shape[0]
        return out

    sizes = np.array([1, 3, 16, 100, 1000, 4096, 9216, 50000] * 4, np.int64)
    found = addresses(sizes)
    assert (found[:, 0] == 0).all() and (found[:, 1] == sizes).all()
    source = np.arange(60, dtype=np.float32).reshape(3, 20)[:, 1:18]  # strided, odd
    copy = aligned(source)
    assert copy.ctypes.data % 64 == 0 and copy.flags.c_contiguous
    assert np.array_equal(copy, source) and copy.dtype == source.dtype
    conv = sparse_conv.ConvLayout(torch.randn(30, 3, 5, 5), torch.randn(30))
    one = sparse_conv.ConvLayout(torch.randn(30, 1, 5, 5), torch.randn(30))
    linear = sparse_linear.LinearLayout(torch.randn(70, 90), torch.randn(70))
    vector_read = {conv: ("w_taps", "bias", "w_sum"), linear: ("rows", "bias"),
                   one: ("w_block", "bias", "w_sum")}
    for layout, names in vector_read.items():
        for name in names:
            assert getattr(layout, name).ctypes.data % 64 == 0, name


@pytest.mark.parametrize("batch, outputs", [(1, 70), (2, 300), (3, 300), (33, 70), (83, 70)])
def test_the_linear_kernels_are_the_linear_layer(batch, outputs):
    # 300 outputs: padded to 320, five 64-wide blocks, the last in a column block of its own;
    # 83 samples: a whole 64-sample tile, then one of 19 (one 16 x 16 transpose, 3 by hand)
    torch.manual_seed(batch)
    weight = torch.randn(outputs, 90) * (torch.rand(outputs, 90) < 0.3)
    bias = torch.randn(outputs)
    x = torch.randn(batch, 90) * (torch.rand(batch, 90) < 0.4)
    layout = sparse_linear.LinearLayout(weight, bias)
    want = F.linear(x, weight, bias)
    assert torch.allclose(sparse_linear.gather(x, layout), want, atol=1e-5)
    assert torch.allclose(sparse_linear.sparse_weights(x, layout), want, atol=1e-5)


def test_eval_k_winners_is_the_layers_kernel():
    layer = KWinners(50, 10, k_inference_factor=1.5, boost_strength=1.0).eval()
    layer.duty_cycle.uniform_(0, 0.5)
    x = torch.randn(8, 50)
    x[:, :20] = 1.0  # exact ties at the k-th place: the lowest indices win in both
    with torch.no_grad():
        want = layer(x)
    got = kwinners_kernel.k_winners_eval(x, layer.boost_factors().numpy(), 1, layer.k_eval)
    assert torch.equal(got, want)


def test_multiply_adds_count_the_products_with_non_zero_inputs():
    net = tiny(conv=[ConvLayerConfig(4, k=60)], hidden=HiddenLayerConfig(20, k=5, density=0.5),
               k_inference_factor=1.0)
    estimate = {r["layer"]: r for r in layer_multiply_adds(net, input_shape=(1, 28, 28))}
    assert estimate["conv1"]["dense"] == 24 * 24 * 4 * 25 == estimate["conv1"]["effective"]
    assert estimate["linear"]["dense"] == 576 * 20
    assert estimate["linear"]["effective"] == pytest.approx(576 * 20 * (60 / 576) * 0.5,
                                                            rel=0.01)
    x = torch.randn(3, 1, 28, 28)
    measured = {r["layer"]: r for r in layer_multiply_adds(net, x)}
    assert measured["conv1"]["effective"] == estimate["conv1"]["dense"]
    stored = (net.linear.module.weight != 0).sum(0).double()
    with torch.no_grad():
        h = net[:4](x).flatten(1)
    want = float(((h != 0).double() @ stored).mean())
    assert measured["linear"]["effective"] == pytest.approx(want)


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
def test_the_engine_predicts_as_the_model_on_every_noise_level(name, mnist_root):
    """All 11 levels x 10,000 images: at least 99.99% of the predictions agree."""
    info = pretrained_info(name)
    dataset = MNISTDataset(DataConfig(root=str(mnist_root)))
    sweep = NoiseSweep(dataset, info["noise_levels"], info["seed"], torch.device("cpu"))
    net = load_pretrained(name)
    engine = sparse_inference(net)
    with torch.no_grad():
        for key, (x, _) in sweep.sets.items():
            differ = sum(int((net(x[i:i + 1000]).argmax(1)
                              != engine(x[i:i + 1000]).argmax(1)).sum())
                         for i in range(0, len(x), 1000))
            assert differ <= len(x) // 10_000, f"{name} at {key}: {differ} predictions differ"


@pytest.mark.slow  # numba compiles the two-thread kernels in every process (about 10 s)
def test_two_threads_split_the_samples_without_changing_a_bit(mnist):
    net = load_pretrained("sparse_cnn2")
    engine = sparse_inference(net)
    one = engine.layer_outputs(mnist)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = engine.layer_outputs(mnist)
    finally:
        torch.set_num_threads(threads)
    for name in ("kwinners1", "kwinners2", "kwinners"):  # the numba kernels' blocks
        assert torch.equal(one[name], two[name]), name


def test_an_affine_batch_norm_is_folded_too():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), MaxPool2x2(), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 12 * 12, 10), nn.BatchNorm1d(10),
                        nn.LogSoftmax(dim=1))
    with torch.no_grad():
        net.train()(torch.randn(32, 1, 28, 28))
        for norm in (net[1], net[6]):
            norm.weight.uniform_(-2, 2)  # negative scales: folding, not pooling, takes them
    net.eval()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(sparse_inference(net)(x), net(x), atol=1e-4)


def test_the_benchmark_pairs_its_ratios_by_round_and_bounds_their_geometric_mean():
    from scipy import stats as sp
    engine, plain = [300.0, 330.0, 310.0, 290.0, 320.0], [100.0, 150.0, 105.0, 100.0, 140.0]
    ratios, (low, high) = bench_inference.round_ratios(engine, plain)
    assert ratios == [3.0, 2.2, engine[2] / plain[2], 2.9, engine[4] / plain[4]]
    logs = np.log(ratios)
    want = np.exp(sp.t.interval(0.95, 4, loc=logs.mean(), scale=sp.sem(logs)))
    assert (low, high) == pytest.approx(tuple(want))
    assert low < sp.gmean(ratios) < high
    rates = {("sparse_cnn2", 1, 256): {"sparse": engine, "plain": plain},
             ("dense_cnn2", 1, 256): {"sparse": plain, "plain": [150.0] * 5}}
    rows = [{"network": "sparse_cnn2", "label": "Sparse CNN-2", "threads": 1, "batch": 256,
             "sparse": 310, "plain": 105},
            {"network": "dense_cnn2", "label": "Dense CNN-2", "threads": 1, "batch": 256,
             "sparse": 105, "plain": 150}]
    (line,) = bench_inference.against_dense(rows, rates)
    assert line.startswith("Sparse CNN-2 (sparse) / Dense CNN-2 (plain), 1 thread(s), "
                           "batch 256: 2.07x (the 5 rounds: 1.93x to 2.20x")
