"""Losses: SSIM against two independent implementations, pairwise cost against per-pair evaluation."""

import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as msssim_ssim
from skimage.color import rgb2yuv
from skimage.metrics import structural_similarity

import neurosql.core.losses as losses
import neurosql.core.native as native
from neurosql.errors import NeuroSQLError
from neurosql.core.losses import loss_per_sample, pairwise_cost, ssim
from neurosql.core.ssim_parts import ANY_CHANNEL_LOSSES


def skimage_ssim(x, y):
    """Per-sample SSIM by scikit-image, in float64, for (n, C, H, W) tensors."""
    return torch.tensor(
        [
            structural_similarity(
                a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=1.0, channel_axis=0,
            )  # fmt: skip
            for a, b in zip(x, y)
        ]
    )


def reference_ssim(x, y):
    return msssim_ssim(x, y, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5, K=(0.01, 0.03))


def smooth(shape, seed):
    """Random images low-pass filtered, so that SSIM sees structure rather than noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


@pytest.fixture(params=["compiled", "gemm"])
def path(request, monkeypatch):
    """Run a pairwise test on the compiled CPU kernel and on the GEMM path (other devices, CPUs without a compiler)."""
    if request.param == "gemm":
        monkeypatch.setattr(native, "kernel", lambda: None)
    elif native.kernel() is None:
        pytest.skip("no C compiler here: the compiled kernel is unavailable")
    return request.param


def expanded_pairs(x, y, loss):
    """The reference path: loss_per_sample on all n * m pairs, materialised."""
    n, m = len(x), len(y)
    X = x[:, None].expand(n, m, *x.shape[1:]).reshape(n * m, *x.shape[1:])
    Y = y[None].expand(n, m, *y.shape[1:]).reshape(n * m, *y.shape[1:])
    return loss_per_sample(X, Y, loss).view(n, m)


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (3, 3, 16, 16), (3, 3, 13, 21), (2, 1, 11, 11)])
@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_ssim_matches_msssim_and_skimage(shape, kind):
    torch.manual_seed(0)
    x = torch.rand(shape) if kind == "random" else smooth(shape, 1)
    y = (x + 0.2 * torch.randn(shape)).clamp(0, 1) if kind == "random" else smooth(shape, 2)
    s = ssim(x, y)
    assert s.shape == (shape[0],)
    torch.testing.assert_close(s, reference_ssim(x, y), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.double(), skimage_ssim(x, y), atol=1e-4, rtol=0)


def test_ssim_on_real_mnist_digits(digits):
    x, y = digits[:24], digits[24:48]  # different digits, real strokes on black background
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for a, b in ((x, y), (x, noisy)):
        s = ssim(a, b)
        torch.testing.assert_close(s, reference_ssim(a, b), atol=1e-4, rtol=0)
        torch.testing.assert_close(s.double(), skimage_ssim(a, b), atol=1e-4, rtol=0)
    # float64 input agrees with scikit-image far below the float32 tolerance
    torch.testing.assert_close(ssim(x.double(), y.double()), skimage_ssim(x, y), atol=1e-8, rtol=0)


def test_ssim_of_an_image_with_itself_is_one(digits):
    x = torch.cat([digits[:4].expand(4, 3, 28, 28), smooth((4, 3, 28, 28), 3)])
    torch.testing.assert_close(ssim(x, x), torch.ones(8), atol=1e-6, rtol=0)
    torch.testing.assert_close(loss_per_sample(x, x), torch.zeros(8), atol=1e-6, rtol=0)


def test_l1_and_l2_equal_direct_numpy(path):
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 2, 12, 14)), rng.random((5, 2, 12, 14))
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(loss_per_sample(x, y, "l1"), np.abs(a - b).mean(axis=(1, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(loss_per_sample(x, y, "l2"), ((a - b) ** 2).mean(axis=(1, 2, 3)), rtol=1e-12)
    C1 = np.abs(a[:, None] - b[None]).mean(axis=(2, 3, 4))  # (5, 5)
    C2 = ((a[:, None] - b[None]) ** 2).mean(axis=(2, 3, 4))
    np.testing.assert_allclose(pairwise_cost(x, y, "l1").numpy(), C1, atol=1e-6)
    np.testing.assert_allclose(pairwise_cost(x, y, "l2").numpy(), C2, atol=1e-6)


def test_combined_losses_follow_their_definitions(digits):
    x, y = digits[:6], digits[6:12]
    s, l1 = ssim(x, y), (x - y).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(loss_per_sample(x, y, "ssim"), 1 - s)
    torch.testing.assert_close(loss_per_sample(x, y), 0.5 * (1 - s) + 0.5 * l1)


@pytest.mark.parametrize("loss", ANY_CHANNEL_LOSSES)
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_pairwise_cost_equals_each_pair(digits, loss, chunk_size, path):
    x, y = digits[:7], digits[20:32]  # n != m; chunk_size 3 leaves ragged last tiles
    C = pairwise_cost(x, y, loss, chunk_size=chunk_size)
    assert C.shape == (7, 12) and C.dtype == torch.float32
    torch.testing.assert_close(C, expanded_pairs(x, y, loss), atol=1e-5, rtol=0)


@pytest.mark.parametrize("loss", ["ssim_l1", "ssim", "ssim_l1_yuv"])
def test_pairwise_cost_three_channels_non_square(loss, path):
    x, y = smooth((5, 3, 15, 19), 4), torch.rand(4, 3, 15, 19, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(pairwise_cost(x, y, loss), expanded_pairs(x, y, loss), atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile", [1, 16])
def test_gemm_path_with_many_groups_tiles_and_position_batches(monkeypatch, tile):
    monkeypatch.setattr(native, "kernel", lambda: None)
    x, y = smooth((5, 3, 15, 19), 4), torch.rand(4, 3, 15, 19, generator=torch.Generator().manual_seed(5))
    expected = expanded_pairs(x, y, "ssim")
    # one output row of window features per group; 2 x 2 tiles; 1 position per GEMM, or 4 with a ragged last batch
    monkeypatch.setattr(losses, "CHUNK_BUDGET", 1)
    monkeypatch.setattr(losses, "TILE", tile)
    torch.testing.assert_close(pairwise_cost(x, y, "ssim", chunk_size=2), expected, atol=1e-5, rtol=0)


def test_pairwise_cost_takes_float64_and_returns_float32(digits, path):
    x, y = digits[:3].double(), digits[3:5]
    C = pairwise_cost(x, y)
    assert C.dtype == torch.float32 and C.device == x.device
    torch.testing.assert_close(C, expanded_pairs(x.float(), y, "ssim_l1"), atol=1e-5, rtol=0)


def test_pairwise_cost_is_small_on_the_diagonal_of_identical_sets(digits, path):
    C = pairwise_cost(digits[:10], digits[:10])
    torch.testing.assert_close(C.diagonal(), torch.zeros(10), atol=1e-5, rtol=0)
    assert (C + 1e-5 >= C.diagonal()[:, None]).all()  # an image is its own nearest neighbour


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_compiled_tiles_cover_ragged_rows_and_columns(chunk_size):
    # 13 rows and 70 columns are no multiples of the kernel's 6 x 32 register blocks; chunk_size 7
    # gives 12-row, 32-column tiles, so several calls per thread and a ragged last tile each way
    if native.kernel() is None:
        pytest.skip("no C compiler here: the compiled kernel is unavailable")
    x, y = smooth((13, 3, 23, 17), 8), torch.rand(70, 3, 23, 17, generator=torch.Generator().manual_seed(9))
    for loss in ("ssim_l1", "ssim", "l1"):
        C = pairwise_cost(x, y, loss, chunk_size=chunk_size)
        assert C.shape == (13, 70)
        torch.testing.assert_close(C, expanded_pairs(x, y, loss), atol=1e-5, rtol=0)
    one = pairwise_cost(x[:1, :1, :11, :11], y[:1, :1, :11, :11])  # a single pair and a single position
    torch.testing.assert_close(one, expanded_pairs(x[:1, :1, :11, :11], y[:1, :1, :11, :11], "ssim_l1"))


def test_pairwise_ssim_is_exact_on_flat_bright_images(path):
    # Nearly constant windows: E[x^2] - mu^2 cancels in float32 (the per-sample loss is off by ~2e-5
    # here), the centred windows of both pairwise paths do not.
    g = torch.Generator().manual_seed(10)
    x, y = (0.9 + 1e-3 * torch.randn(2, 6, 1, 20, 20, generator=g)).clamp(0, 1)
    exact = expanded_pairs(x.double(), y.double(), "ssim").float()
    torch.testing.assert_close(pairwise_cost(x, y, "ssim"), exact, atol=1e-6, rtol=0)


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler here")
def test_kernel_is_compiled_once_per_cache_and_missing_compilers_give_none(tmp_path):
    kernel = native.load(tmp_path, os.environ.get("CC", "cc"))
    assert kernel is not None and hasattr(kernel, "ssim_sums") and hasattr(kernel, "l1_sums")
    (built,) = list(tmp_path.iterdir())  # the library alone: no sources or temporary folders left
    stamp = built.stat().st_mtime_ns
    assert native.load(tmp_path, os.environ.get("CC", "cc")) is not None
    assert list(tmp_path.iterdir()) == [built] and built.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert native.load(tmp_path / "elsewhere", str(tmp_path / "no-such-cc")) is None


@pytest.mark.parametrize("loss", ANY_CHANNEL_LOSSES)
def test_gradients_flow_through_loss_per_sample(loss):
    y = smooth((2, 1, 12, 13), 6).double()
    x = smooth((2, 1, 12, 13), 7).double().requires_grad_()
    loss_per_sample(x, y, loss).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda t: loss_per_sample(t, y, loss), (x.detach().requires_grad_(),))


def test_to_yuv_matches_skimage():
    x = torch.rand(3, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = rgb2yuv(x.permute(0, 2, 3, 1).numpy())  # channels last
    torch.testing.assert_close(losses.to_yuv(x), torch.from_numpy(expected).permute(0, 3, 1, 2))


@pytest.mark.parametrize("weight", [0.0, 1.0, 3.0])
def test_yuv_loss_follows_its_definition(weight):
    """SSIM of the luma alone (scikit-image on skimage's Y) plus L1 of Y, w U, w V, by hand."""
    x, y = smooth((3, 3, 16, 16), 1).double(), smooth((3, 3, 16, 16), 2).double()
    yuv_x, yuv_y = (rgb2yuv(t.permute(0, 2, 3, 1).numpy()) for t in (x, y))  # (n, H, W, 3)
    l1 = np.abs(yuv_x - yuv_y) * np.array([1.0, weight, weight])
    s = skimage_ssim(torch.from_numpy(yuv_x[..., :1]).permute(0, 3, 1, 2), torch.from_numpy(yuv_y[..., :1]).permute(0, 3, 1, 2))
    expected = 0.5 * (1 - s) + 0.5 * torch.from_numpy(l1.mean(axis=(1, 2, 3)))
    torch.testing.assert_close(loss_per_sample(x, y, "ssim_l1_yuv", chroma_weight=weight), expected)
    C = pairwise_cost(x.float(), y.float(), "ssim_l1_yuv", chroma_weight=weight)
    torch.testing.assert_close(C.diagonal(), expected.float(), atol=1e-5, rtol=0)


def test_yuv_loss_of_an_image_and_its_grey_is_its_weighted_chroma():
    """A grey image with the same luma has U = V = 0 and SSIM 1: the loss is w/2 mean(|U| + |V|) / 3."""
    x = smooth((2, 3, 16, 16), 3)
    grey = losses.to_yuv(x)[:, :1].expand(-1, 3, -1, -1)
    chroma = losses.to_yuv(x)[:, 1:].abs().sum(1).mean((1, 2)) / 3  # (n,)
    for w in (0.5, 2.0):
        torch.testing.assert_close(loss_per_sample(x, grey, "ssim_l1_yuv", chroma_weight=w), w / 2 * chroma)


def test_yuv_loss_gradients_and_grey_images():
    y = smooth((2, 3, 12, 13), 6).double()
    x = smooth((2, 3, 12, 13), 7).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: loss_per_sample(t, y, "ssim_l1_yuv", chroma_weight=2.0), (x,))
    grey = torch.rand(2, 1, 16, 16)
    for f in (loss_per_sample, pairwise_cost):
        with pytest.raises(NeuroSQLError, match="needs RGB images"):
            f(grey, grey, "ssim_l1_yuv")


@pytest.mark.parametrize(
    "x, y, loss, match",
    [
        (torch.rand(2, 1, 28, 28), torch.rand(2, 3, 28, 28), "ssim_l1", "differ"),
        (torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 27), "l1", "differ"),
        (torch.rand(2, 1, 10, 28), torch.rand(2, 1, 10, 28), "ssim", "smaller than the 11x11"),
        (torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), "ssim+l1", "unknown loss"),
        (torch.rand(2, 28, 28), torch.rand(2, 28, 28), "l2", "4-D"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.rand(2, 1, 28, 28), "l1", "float"),
    ],
)
def test_bad_input_raises(x, y, loss, match):
    with pytest.raises(NeuroSQLError, match=match):
        loss_per_sample(x, y, loss)
    with pytest.raises(NeuroSQLError, match=match):
        pairwise_cost(x, y, loss)


def test_bad_batch_and_chunk_size_raise():
    x = torch.rand(3, 1, 28, 28)
    with pytest.raises(NeuroSQLError, match="differ"):
        loss_per_sample(x, x[:2])
    with pytest.raises(NeuroSQLError, match="differ"):
        ssim(x, x[:2])
    with pytest.raises(NeuroSQLError, match="chunk_size"):
        pairwise_cost(x, x, chunk_size=0)
    assert pairwise_cost(x, x[:2]).shape == (3, 2)  # pairwise accepts different batch sizes
