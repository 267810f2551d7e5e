"""Common corruptions: identity at severity 0, reproducible from the seed, the math of each one
on images whose answer is known, and the corruptions study end to end."""

import json
import math

import pandas as pd
import pytest
import torch

from data.corruptions import CORRUPTIONS, SEVERITIES, affine, random_squares
from data.mnist_c import MNIST_C
from data.noise import add_pixel_noise
from experiments.cli import load_experiment, run_experiment
from experiments.robust import corruptions_report

RANDOM = {"gaussian_noise", "salt_and_pepper", "occlusion", "rotation", "shear", "scale",
          "translation", "pixel_noise"}


def digits(n=6):
    """Digit-like images: a bright bar off the centre, on a black background."""
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, 6:22, 9:13] = torch.linspace(0.6, 1.0, n).view(n, 1, 1, 1)
    return images


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_zero_is_an_unchanged_copy(name):
    images = digits()
    out = CORRUPTIONS[name](images, 0, seeded(0))
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_severity_changes_the_images_reproducibly_and_stays_in_the_box(name):
    images = digits()
    for severity in SEVERITIES:
        out = CORRUPTIONS[name](images, severity, seeded(3))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert not torch.equal(out, images)
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, CORRUPTIONS[name](images, severity, seeded(3)))
        if name in RANDOM:
            assert not torch.equal(out, CORRUPTIONS[name](images, severity, seeded(4)))
    assert torch.equal(images, digits())  # the input is left alone


def test_unknown_severity_is_refused():
    with pytest.raises(ValueError, match="severity must be in 0..5"):
        CORRUPTIONS["contrast"](digits(), 6)


def test_noise_corruptions_have_the_stated_strength():
    gray = torch.full((20, 1, 28, 28), 0.5)
    noisy = CORRUPTIONS["gaussian_noise"](gray, 1, seeded(0))  # std 0.1: clipping negligible
    assert (noisy - gray).std().item() == pytest.approx(0.1, rel=0.02)
    salted = CORRUPTIONS["salt_and_pepper"](gray, 3, seeded(0))  # 20% of pixels to 0 or 1
    hit = salted != 0.5
    assert hit.double().mean().item() == pytest.approx(0.2, abs=0.01)
    assert set(salted[hit].unique().tolist()) == {0.0, 1.0}
    assert salted[hit].mean().item() == pytest.approx(0.5, abs=0.03)


def test_pixel_noise_is_the_papers_noise():
    images = digits()
    assert torch.equal(CORRUPTIONS["pixel_noise"](images, 2, seeded(5)),
                       add_pixel_noise(images, 0.2, seeded(5)))


def test_blur_contrast_brightness_and_occlusion_by_their_formulas():
    flat = torch.full((2, 1, 28, 28), 0.3)
    assert torch.allclose(CORRUPTIONS["gaussian_blur"](flat, 5), flat)  # edges replicated
    images = digits()
    blurred = CORRUPTIONS["gaussian_blur"](images, 2)
    assert blurred.sum().item() == pytest.approx(images.sum().item(), rel=1e-5)  # mass kept
    low = CORRUPTIONS["contrast"](images, 1)  # m + 0.4 (x - m)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(low, mean + 0.4 * (images - mean))
    assert torch.allclose(CORRUPTIONS["brightness"](images, 2), (images + 0.2).clamp(max=1))
    ones = torch.ones(50, 1, 28, 28)
    occluded = CORRUPTIONS["occlusion"](ones, 3, seeded(0))  # one 12 x 12 square of zeros
    assert ((occluded == 0).flatten(1).sum(1) == 144).all()
    squares = random_squares(500, 28, 28, 12, seeded(1))
    tops = squares.flatten(2).float().argmax(2).flatten() // 28
    assert tops.min() == 0 and tops.max() == 16  # every position inside the image occurs


def test_affine_resampling_moves_content_as_its_matrix_says():
    images = torch.rand(3, 1, 28, 28)
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).expand(3, 2, 3)
    assert torch.allclose(affine(images, turn), torch.rot90(images, 1, dims=(2, 3)), atol=1e-5)
    shift = torch.tensor([[1.0, 0.0, -2 * 3 / 28], [0.0, 1.0, 0.0]]).expand(3, 2, 3)
    moved = affine(images, shift)  # sampled at x - 3 pixels: the content moves right by 3
    assert torch.allclose(moved[..., 3:], images[..., :-3], atol=1e-5)
    assert moved[..., :3].abs().max() < 1e-5  # the background comes in from outside


def test_translation_and_rotation_keep_the_digits_mass_roughly():
    images = digits()
    for name in ("translation", "rotation"):
        out = CORRUPTIONS[name](images, 1, seeded(0))
        assert out.sum().item() == pytest.approx(images.sum().item(), rel=0.05)
    centre = torch.zeros(1, 1, 28, 28)
    centre[..., 13:15, 13:15] = 1.0  # the image centre is a fixed point of rotation and scale
    for name in ("rotation", "scale", "shear"):
        out = CORRUPTIONS[name](centre, 5, seeded(0))
        assert out[..., 13:15, 13:15].mean() > 0.3, name
        assert math.isclose(float(out[..., :8, :].sum()), 0.0, abs_tol=1e-6), name


def smoke(tiny_runs, mnist_root, out, *extra):
    suite = load_experiment("configs/mnist_corruptions.yaml",
                                  ["source=runs", f"runs={tiny_runs}", "run=[sparse_cnn2]",
                                   f"data.root={mnist_root}", *extra], smoke=True)
    return run_experiment(suite, out, threads=1)


def test_corruptions_smoke_records_report_and_resume(tiny_runs, mnist_root, tmp_path, capsys):
    exp = smoke(tiny_runs, mnist_root, tmp_path)
    metrics = exp / "sparse_cnn2" / "seed-42" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["corruption"] for r in records] == ["clean", *MNIST_C, *CORRUPTIONS]
    severity = {"clean": [0], "mnist_c": [1], "extra": [1, 5]}
    assert all(r["images"] == 200 and r["severity"] == severity[r.get("suite", "clean")]
               for r in records)
    rotation = next(r for r in records if r["corruption"] == "rotation")
    assert rotation["amounts"] == [10, 60] and rotation["title"] == "rotation"
    assert {(r["suite"], r["title"]) for r in records if r["corruption"] == "shear"} == {
        ("mnist_c", "shear"), ("extra", "shear")}  # the same name, kept apart
    assert (exp / "mnist_c_mosaic.png").is_file() and (exp / "extra_mosaic.png").is_file()
    paths = corruptions_report.write_report(exp)
    assert {p.name for p in paths} == {"mnist_c.md", "mnist_c.csv", "corruptions.md",
                                      "corruptions.csv", "corruption_curves.png",
                                      "corruption_curves.csv"}
    table = pd.read_csv(exp / "corruptions.csv")
    assert len(table) == 1 + 2 * len(CORRUPTIONS) and (table.lo <= table.accuracy).all()
    assert len(pd.read_csv(exp / "mnist_c.csv")) == 1 + len(MNIST_C)
    # resumable per corruption: drop the last three lines and rerun
    (exp / "sparse_cnn2" / "seed-42" / "done").unlink()
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records[:-3]))
    smoke(tiny_runs, mnist_root, tmp_path)
    again = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert again[:-3] == records[:-3]
    assert [r["correct"] for r in again] == [r["correct"] for r in records]  # same draws
    assert "0 already done, 1 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_corruptions_at_full_size_on_the_tiny_network(tiny_runs, mnist_root, tmp_path):
    exp = smoke(tiny_runs, mnist_root, tmp_path, "data.test_limit=null",
                "severities=[1,2,3,4,5]")
    corruptions_report.write_report(exp)
    table = pd.read_csv(exp / "corruptions.csv")
    assert (table.images == 10_000).all() and len(table) == 1 + 5 * len(CORRUPTIONS)


# ---------------------------------------------------------------- MNIST-C

def test_mnist_c_keeps_shape_dtype_and_range_on_the_8_bit_grid_reproducibly():
    images = digits()
    for name, corruption in MNIST_C.items():
        out = corruption(images, seeded(3))
        assert out.shape == images.shape and out.dtype == images.dtype, name
        assert out.min() >= 0 and out.max() <= 1, name
        assert torch.equal(out * 255, (out * 255).round()), name  # k / 255, as published
        assert torch.equal(out, corruption(images, seeded(3))), name
        assert not torch.equal(out, images), name
    assert torch.equal(images, digits())


def test_mnist_c_pixelwise_corruptions_give_their_stated_parameters():
    gray = torch.full((40, 1, 28, 28), 0.2)
    shot = MNIST_C["shot_noise"](gray, seeded(0))  # Poisson(3 x) / 3: multiples of 1/3
    assert set((shot * 3).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert shot.mean().item() == pytest.approx(0.2, abs=0.01)
    assert (shot * 3).var().item() == pytest.approx(0.6, rel=0.1)  # Poisson: var = mean
    impulse = MNIST_C["impulse_noise"](gray, seeded(0))
    assert (impulse != gray).double().mean().item() == pytest.approx(0.17, abs=0.01)
    images = digits()
    assert torch.allclose(MNIST_C["brightness"](images), (images + 0.5).clamp(max=1),
                          atol=0.5 / 255)
    striped = MNIST_C["stripe"](images)
    assert torch.allclose(striped[..., :7], 1 - images[..., :7], atol=0.5 / 255)
    assert torch.allclose(striped[..., 7:21], images[..., 7:21], atol=0.5 / 255)


def centre_of_mass(images):
    rows = torch.arange(28.0).view(1, 1, 28, 1)
    cols = torch.arange(28.0).view(1, 1, 1, 28)
    mass = images.sum((1, 2, 3))
    return (images * rows).sum((1, 2, 3)) / mass, (images * cols).sum((1, 2, 3)) / mass


def test_mnist_c_geometry_by_its_stated_parameters():
    bar = torch.zeros(8, 1, 28, 28)
    bar[..., 13:15, 4:24] = 1.0  # a horizontal bar through the centre
    turned = MNIST_C["rotate"](bar, seeded(0))
    i, j = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    w = turned[:, 0]
    cov = ((w * (i - 13.5) * (j - 13.5)).sum((1, 2)), (w * (j - 13.5) ** 2).sum((1, 2)),
           (w * (i - 13.5) ** 2).sum((1, 2)))
    angle = 0.5 * torch.atan2(2 * cov[0], cov[1] - cov[2])  # the bar's axis, radians
    assert torch.allclose(angle.abs(), torch.full((8,), 0.4), atol=0.03)
    square = torch.zeros(4, 1, 28, 28)
    square[..., 4:24, 4:24] = 1.0  # 20 x 20 about the centre
    scaled = MNIST_C["scale"](square)
    assert scaled.sum((1, 2, 3)).mean().item() == pytest.approx(400 * 0.7 ** 2, rel=0.05)
    dot = torch.zeros(16, 1, 28, 28)
    dot[..., 10:18, 10:18] = 1.0
    moved = MNIST_C["translate"](dot, seeded(1))
    di, dj = centre_of_mass(moved)
    assert set(torch.cat([di, dj]).sub(13.5).abs().round().tolist()) == {3.0}
    sheared = MNIST_C["shear"](dot, seeded(2))
    assert torch.allclose(sheared.sum((1, 2, 3)), torch.full((16,), 64 / math.cos(0.4)),
                          rtol=0.03)  # x reads y / cos(0.4): rows stretch by 1 / cos 0.4


def test_mnist_c_lines_blur_and_edges():
    blank = torch.zeros(12, 1, 28, 28)
    dotted = MNIST_C["dotted_line"](blank, seeded(0))
    columns = dotted.sum((0, 1, 2))
    off = (torch.arange(28) // 2) % 2 == 0
    assert columns[off].sum() == 0 and (columns[~off][:-1] > 0).all()  # 2 on, 2 off
    zig = MNIST_C["zigzag"](blank, seeded(0))
    assert zig.sum((1, 2, 3)).min() > 20 and zig[..., :2].sum() == 0  # from column 2 on
    images = digits()
    streaked = MNIST_C["motion_blur"](images, seeded(0))
    assert streaked.sum().item() == pytest.approx(images.sum().item(), rel=0.02)  # weights sum to 1
    square = torch.zeros(1, 1, 28, 28)
    square[..., 8:20, 8:20] = 1.0
    edges = MNIST_C["canny_edges"](square)
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    assert edges[..., 11:17, 11:17].sum() == 0 and edges[..., :5, :].sum() == 0
    ring = edges[0, 0].nonzero()
    assert ((ring - 13.5).abs().max(1).values - 6).abs().max() <= 1.0  # on the square's rim


def test_per_corruption_paired_table_pairs_the_seeds_of_each_corruption():
    """Per MNIST-C corruption, the two networks' errors are paired seed by seed: A lower on
    every seed gives 'n of n' and a negative interval; unreadable severities are left out."""
    import pandas as pd

    from experiments.robust.corruptions_report import per_corruption_paired

    rows = []
    for seed, (a_wrong, b_wrong) in zip([1, 2, 3], [(10, 30), (12, 31), (11, 29)]):
        for net, wrong in (("a", a_wrong), ("b", b_wrong)):
            base = {"network": net, "label": net.upper(), "seed": seed, "suite": "mnist_c",
                    "corruption": "fog", "title": "fog", "images": 1000}
            rows.append({**base, "severity": 1, "unreadable": False, "correct": 1000 - wrong})
            rows.append({**base, "severity": 2, "unreadable": True, "correct": 0})
    table = per_corruption_paired(pd.DataFrame(rows), [("a", "b")])
    line = table.splitlines()[2]
    assert line.startswith("| fog | A − B | 1.1 | 3.0 | -1.9 |"), line
    assert "| 3 of 3 |" in line
    low, high = [float(v) for v in line.split("|")[6].split(" to ")]
    assert low < -1.9 < high < 0
    assert per_corruption_paired(pd.DataFrame(rows), [("a", "c")]) is None
