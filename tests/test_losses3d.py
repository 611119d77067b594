"""3-D SSIM and the volume cost against scikit-image and a direct 7³-window computation."""

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate
from skimage.metrics import structural_similarity

from neurosql.core import losses, losses3d
from neurosql.errors import NeuroSQLError


def volumes(n, side=12, seed=0, channels=1):
    """Smooth-ish random volumes and noisy copies of them, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, side, side, side, generator=g)
    return x, (0.6 * x + 0.4 * torch.rand(x.shape, generator=g)).clamp(0, 1)


def direct_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two volumes with the full 7³ window (no separability), valid positions, float64."""
    t = np.arange(7) - 3
    g = np.exp(-(t**2) / (2 * 0.9**2))
    w = np.einsum("i,j,k->ijk", g, g, g)
    w /= w.sum()
    f = lambda v: correlate(v, w, mode="constant")[3:-3, 3:-3, 3:-3]
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return float(np.mean((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))))


def test_ssim_matches_skimage_and_the_direct_window():
    x, y = volumes(3, side=13)
    got = losses3d.ssim(x, y).numpy()
    for i in range(3):
        a, b = x[i, 0].double().numpy(), y[i, 0].double().numpy()
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=0.9, use_sample_covariance=False, data_range=1.0)
        assert got[i] == pytest.approx(ref, abs=2e-5)
        assert got[i] == pytest.approx(direct_ssim(a, b), abs=2e-5)
    assert torch.allclose(losses3d.ssim(x, x), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("loss", ["ssim_l1", "ssim", "l1", "l2"])
def test_pairwise_cost_equals_per_pair_loss_in_small_blocks(monkeypatch, loss):
    monkeypatch.setattr(losses3d, "CHUNK_BUDGET", 3 * 2 * 10**3)  # blocks of 3×1 pairs: many blocks, ragged edges
    x, _ = volumes(4, side=10, channels=2)
    _, y = volumes(5, side=10, seed=1, channels=2)
    cost = losses.pairwise_cost(x, y, loss)  # dispatched on the 5-D shape
    per_pair = torch.stack([losses.loss_per_sample(x[i : i + 1].expand(5, -1, -1, -1, -1), y, loss) for i in range(4)])
    assert cost.shape == (4, 5)
    torch.testing.assert_close(cost, per_pair, atol=2e-5, rtol=0)
    if loss == "ssim":
        direct = [[1 - np.mean([direct_ssim(x[i, c].double().numpy(), y[k, c].double().numpy()) for c in range(2)])
                   for k in range(5)] for i in range(4)]
        np.testing.assert_allclose(cost.numpy(), direct, atol=2e-5)


def test_loss_is_differentiable_and_small_volumes_fail_clearly():
    x, y = volumes(2, side=8)
    y.requires_grad_(True)
    losses.loss_per_sample(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    with pytest.raises(NeuroSQLError, match="smaller than the 7³ SSIM window") as info:
        losses.pairwise_cost(torch.rand(2, 1, 6, 6, 6), torch.rand(2, 1, 6, 6, 6))
    assert "\n" not in str(info.value)
