"""The numba CPU kernel (models/kernels/kwinners.py) selects exactly the winners torch.topk
does, and keeps the same state."""

import pytest
import torch

from models import KWinners, KWinners2d, backend, kernels

pytestmark = pytest.mark.skipif(not backend.HAVE_NUMBA, reason="numba not installed")


def kernel_winners(scores, k):
    """Winner indices (B, k), sorted, from the kernel's entry with unit boost: where the
    gradient of its output passes (zero scores may win, so the output cannot tell)."""
    rows, n = scores.shape
    layer = KWinners(n, k).eval()
    x = scores.clone().requires_grad_()
    out = kernels.kwinners.k_winners(x, layer, torch.ones(n), 1, k)
    out.backward(torch.ones_like(out))
    winners = x.grad != 0
    assert winners.sum(1).tolist() == [k] * rows
    assert torch.equal(out, scores.masked_fill(~winners, 0.0))
    return torch.nonzero(winners)[:, 1].view(rows, k)


@pytest.mark.parametrize("n, k", [(1, 1), (7, 7), (700, 100), (1024, 300), (4608, 400),
                                  (5000, 1), (100_000, 4_000)])
def test_winners_equal_torch_topk_on_random_rows(n, k):
    torch.manual_seed(n + k)
    scores = torch.randn(6, n) * torch.logspace(-30, 30, 6).view(6, 1)  # tiny to huge values
    expected = scores.topk(k, dim=1).indices.sort(1).values
    assert torch.equal(kernel_winners(scores, k), expected)


def test_ties_go_to_the_lowest_indices_and_signed_zeros_order():
    scores = torch.zeros(3, 10)
    scores[1] = 1.0
    scores[2, [2, 5, 7]] = 2.0  # three clear winners, then ties among the zeros
    assert kernel_winners(scores, 4).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 2, 5, 7]]
    signed = torch.tensor([[-0.0, 0.0, -1.0, -0.0]])
    assert kernel_winners(signed, 1).tolist() == [[1]]  # +0.0 ranks above -0.0


def test_a_plateau_at_the_kth_score_gives_its_lowest_indices_row_after_row():
    # A constant background region gives many equal scores: the k-th falls among them, at a
    # different value and with a different number of clear winners in each row (the search
    # starts each row from the previous row's threshold).
    torch.manual_seed(3)
    rows = []
    for r in range(8):
        row = torch.full((4608,), 0.25 * r - 1.0)
        high = torch.randperm(4608)[: 50 * r]
        row[high] = 5.0 + torch.rand(len(high))
        rows.append(row)
    scores = torch.stack(rows)
    for k in (1, 399, 600):
        got = kernel_winners(scores, k)
        for r, row in enumerate(scores):
            clear = torch.nonzero(row > row.min())[:, 0].tolist()  # 50 r of them, all > 5
            if len(clear) >= k:
                expected = row.topk(k).indices.tolist()
            else:  # every clear winner, then the plateau's lowest indices
                expected = clear + torch.nonzero(row == row.min())[: k - len(clear), 0].tolist()
            assert got[r].tolist() == sorted(expected)


def test_extreme_values_rank_as_floats():
    row = torch.tensor([[float("-inf"), -3e38, -1e-45, 0.0, 1e-45, 2.5, 3e38, float("inf")]])
    for k in range(1, 9):
        assert kernel_winners(row, k).tolist() == [list(range(8 - k, 8))]
    # near-ties that differ only in the last mantissa bit (a threshold search must reach the last bit)
    base = torch.full((1, 64), 1.0)
    base[0, 40] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert kernel_winners(base, 1).tolist() == [[40]]


def run_layer(make, shape, mode, steps, monkeypatch):
    monkeypatch.setattr(backend, "BACKEND", mode)
    torch.manual_seed(0)
    layer = make()
    outs, grads = [], []
    for step in range(steps):
        x = torch.randn(*shape, requires_grad=True)
        y = layer(x)
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
        outs.append(y.detach())
        grads.append(x.grad)
    layer.eval()
    outs.append(layer(torch.randn(*shape)))  # eval: more winners, frozen duty cycles
    return outs, grads, layer


@pytest.mark.parametrize("make, shape", [
    (lambda: KWinners(700, 100, k_inference_factor=1.5, boost_strength=1.5), (64, 700)),
    (lambda: KWinners2d(32, 400, k_inference_factor=1.5, boost_strength=1.5), (8, 32, 12, 12)),
    (lambda: KWinners2d(64, 300, boost_strength=1.5, duty_cycle_period=40), (16, 64, 4, 4)),
])
def test_kernel_and_torch_backends_agree_over_training_steps(make, shape, monkeypatch):
    out_k, grad_k, layer_k = run_layer(make, shape, "auto", 6, monkeypatch)
    out_t, grad_t, layer_t = run_layer(make, shape, "torch", 6, monkeypatch)
    for a, b in zip(out_k, out_t):
        assert torch.equal(a, b)
    for a, b in zip(grad_k, grad_t):
        assert torch.equal(a, b)
    assert torch.allclose(layer_k.duty_cycle, layer_t.duty_cycle, rtol=1e-6, atol=1e-9)
    assert layer_k.duty_cycle.abs().sum() > 0
    assert layer_k.samples_seen.item() == layer_t.samples_seen.item() == 6 * shape[0]


def test_parallel_kernel_matches_the_serial_one(monkeypatch):
    make = lambda: KWinners2d(32, 400, boost_strength=1.5)  # noqa: E731
    shape = (64, 32, 12, 12)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(kernels.rows, "PARALLEL_MIN", 0)
        assert kernels.rows.chunk_count(torch.empty(64, 4608)) == 2
        out_p, grad_p, layer_p = run_layer(make, shape, "auto", 3, monkeypatch)
        monkeypatch.setattr(kernels.rows, "PARALLEL_MIN", 10**12)
        out_s, grad_s, layer_s = run_layer(make, shape, "auto", 3, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(out_p, out_s))
    assert all(torch.equal(a, b) for a, b in zip(grad_p, grad_s))
    assert torch.equal(layer_p.duty_cycle, layer_s.duty_cycle)


def test_kernel_serves_only_float32_cpu_tensors(torch_ops):
    """float32 goes to the kernel (no torch.topk runs), float64 to the torch ops."""
    layer = KWinners(10, 3)
    assert backend.uses_cpu_kernel(torch.randn(2, 10), layer.duty_cycle)
    assert not backend.uses_cpu_kernel(torch.randn(2, 10).double(), layer.duty_cycle)
    y, ops = torch_ops(lambda: layer(torch.randn(4, 10)))
    assert ops["aten::topk"] == 0 and (y != 0).sum(1).tolist() == [3] * 4
    y, ops = torch_ops(lambda: layer.double()(torch.randn(4, 10, dtype=torch.float64)))
    assert ops["aten::topk"] == 1
    assert y.dtype == torch.float64 and (y != 0).sum(1).tolist() == [3] * 4


@pytest.mark.parametrize("chunks", [1, 2])
def test_the_carried_first_probe_changes_no_winner_and_is_left_as_the_last_rows_threshold(
        chunks, monkeypatch):
    import numpy as np
    torch.manual_seed(5)
    x = torch.randn(6, 4608).relu_()
    x[3] = 0.5  # a plateau row: the bracket closes on a key with ties
    boost = np.ones(32, np.float32)
    if chunks == 2:
        monkeypatch.setattr(kernels.rows, "PARALLEL_MIN", 0)
        monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    reference = kernels.kwinners.k_winners_eval(x, boost, 144, 600)
    last = None
    for start in (-1, 0, 1, 2**31, 2**32 - 1, 2**40):  # none, at either end, outside the keys
        hint = np.array([start], np.int64)
        assert torch.equal(kernels.kwinners.k_winners_eval(x, boost, 144, 600, hint), reference)
        assert last is None or hint[0] == last  # the last row's answer, whatever the start
        last = hint[0]
    winners = reference[-1] != 0  # the last row has no ties: its threshold is below its k-th
    key = x[-1].numpy().view(np.uint32) ^ np.uint32(0x80000000)
    assert key[winners.numpy()].min() > last - 1 >= key[~winners.numpy()].max()


@pytest.mark.parametrize("n", [1, 15, 16, 37, 4608])
def test_the_bracket_copy_keeps_the_keys_in_range_in_order(n):
    # the threshold search copies the keys inside its bracket once it narrows: whole 16-key
    # vectors by a register compress, the tail one by one; both ends kept, unsigned order
    import numpy as np
    rng = np.random.default_rng(n)
    keys = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    keys[: n // 3] = 2**32 - 1  # the largest key and the smallest
    keys[n // 3: n // 2] = 0
    for low, high in ((0, 2**32 - 1), (2**31, 2**31 + 2**28), (0, 0), (2**32 - 1, 2**32 - 1),
                      (5, 4)):
        spare = np.full(n + 16, 7, np.uint32)
        m = kernels.kwinners._compact(keys, np.uint32(low), np.uint32(high), spare)
        want = keys[(keys >= low) & (keys <= high)]
        assert m == len(want) and np.array_equal(spare[:m], want)


@pytest.mark.parametrize("n, k", [(4608, 600), (1024, 450), (700, 150), (37, 5)])
def test_the_threshold_is_the_same_with_and_without_the_bracket_copy(n, k):
    # the copy runs only where the CPU has a register compress (AVX-512): both routes are
    # checked on every machine, on distinct keys, on a plateau of ties at the k-th key, and
    # from a first probe that is wrong
    import numpy as np
    rng = np.random.default_rng(n)
    distinct = rng.permutation(np.arange(1, n + 1, dtype=np.uint32) * np.uint32(977))
    tied = distinct.copy()
    order = np.argsort(-distinct.astype(np.int64))
    tied[order[k - 3:k + 5]] = distinct[order[k - 1]]  # 8 equal keys around the k-th
    for keys in (distinct, tied):
        spare = np.empty(n + 16, np.uint32)
        for guess in (-1, int(keys.max()) // 3):
            both = [kernels.kwinners._threshold(keys, keys.max(), k, guess, spare, compress)
                    for compress in (True, False)]
            assert both[0] == both[1]
            t, need = both[0]
            assert (keys > t).sum() + need == k and 0 <= need <= (keys == t).sum()
            assert need == (0 if keys is distinct else 3)
