"""Volume losses: 3-D SSIM, L1, L2 and SSIM+L1 for (n, C, D, H, W), per sample and pairwise.

The same definitions as :mod:`neurosql.core.losses`, with the SSIM window a 3-D
Gaussian w = g ⊗ g ⊗ g and the local statistics taken at every position where
the whole window fits inside the volume ("valid" positions).

Window: 7 taps per axis, σ = 0.9 voxel. The 2-D window (11 taps, σ = 1.5)
would leave a 16³ volume only 6³ valid positions, 5 % of its voxels, all in
the centre; 7 taps leave 10³ (24 %) and 26³ of a 32³ volume (54 %). σ = 0.9
keeps the 2-D window's truncation: its radius, 3 voxels, is 3⅓ σ, as 5 pixels
is 3⅓ · 1.5. scikit-image picks the same 7 taps for σ = 0.9 (radius
int(3.5 σ + 0.5) = 3), so ``structural_similarity(..., gaussian_weights=True,
sigma=0.9, use_sample_covariance=False, data_range=1)`` on 3-D arrays is the
reference. Volumes need at least 7 voxels per side.

The pairwise cost forms the products x_i · y_k of a block of pairs and
filters them with three 1-D passes (the window is separable: 3 × 7
multiply-adds per voxel instead of 343), block by block so memory stays
within CHUNK_BUDGET floats whatever n and m.
"""

from __future__ import annotations

import torch

from ..errors import NeuroSQLError
from .ssim_parts import ANY_CHANNEL_LOSSES, C1, C2, _band, _check_pair, _gaussian_window

WINDOW = 7  # taps per axis of the 3-D Gaussian window
SIGMA = 0.9  # its standard deviation, in voxels
CHUNK_BUDGET = 2**23  # floats of pair products a block of pairwise_cost may hold (32 MB in float32)


def blur(x: torch.Tensor) -> torch.Tensor:
    """Valid Gaussian filtering per channel, (..., D, H, W) -> (..., D-6, H-6, W-6).

    One banded matrix product per axis, each on the layout it finds, so no
    axis is ever transposed in memory (copies dominated otherwise).
    """
    g = _gaussian_window(x.device, x.dtype, WINDOW, SIGMA)
    B_d, B_h, B_w = (_band(size, g) for size in x.shape[-3:])
    x = B_h @ (x @ B_w.T)  # (..., D, H', W')
    D, Hp, Wp = x.shape[-3:]
    return (B_d @ x.reshape(*x.shape[:-3], D, Hp * Wp)).view(*x.shape[:-3], len(B_d), Hp, Wp)


def _ssim_map_mean(mu_x, mu_y, var_x, var_y, cov) -> torch.Tensor:
    """Mean over the last four axes of the SSIM map (Wang et al., 2004)."""
    num = (2 * mu_x * mu_y + C1) * (2 * cov + C2)
    den = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
    return (num / den).flatten(-4).mean(dim=-1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample 3-D SSIM of x[i] and y[i], differentiable.

    Problem: mean over channels and valid positions of the SSIM map with the
    7³ Gaussian window (module docstring). Shapes: x, y (n, C, D, H, W) -> (n,).
    Complexity: O(n C D H W · 3 · max(D, H, W)) for five separable filterings
    (banded matrix products).
    """
    _check_pair(x, y, dims=5, same_batch=True, window=WINDOW)
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x * mu_x, blur(y * y) - mu_y * mu_y
    return _ssim_map_mean(mu_x, mu_y, var_x, var_y, blur(x * y) - mu_x * mu_y)


@torch.no_grad()
def pairwise_cost(x: torch.Tensor, y: torch.Tensor, loss: str = "ssim_l1") -> torch.Tensor:
    """The cost matrix C[i, k] = loss(x[i], y[k]) of volumes, in blocks of pairs, without gradients.

    Problem: as :func:`neurosql.core.losses.pairwise_cost`. Means and variances are
    filtered once per volume; for a block of a × b pairs the products
    x_i y_k (a b C D H W floats, at most CHUNK_BUDGET) are filtered for the
    covariances, and |x_i − y_k| summed for L1.
    Shapes: x (n, C, D, H, W), y (m, C, D, H, W) -> (n, m) float32 on x's device.
    Complexity: n m C D H W (3 · 2 · max(D, H, W) + 3) flops; memory O((n + m) d + CHUNK_BUDGET).
    """
    if loss not in ANY_CHANNEL_LOSSES:
        raise NeuroSQLError(f"unknown loss {loss!r} for volumes; choose one of {', '.join(ANY_CHANNEL_LOSSES)}")
    _check_pair(x, y, dims=5, same_batch=False, window=WINDOW)
    x, y = x.float(), y.to(device=x.device, dtype=torch.float32)
    n, m, d = len(x), len(y), x[0].numel()
    if loss == "l2":
        a, b = x.flatten(1), y.flatten(1)
        return ((a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T).clamp_min_(0) / d
    mu_x, mu_y = blur(x), blur(y)  # (n|m, C, D', H', W')
    var_x, var_y = blur(x * x) - mu_x * mu_x, blur(y * y) - mu_y * mu_y
    cost = torch.empty(n, m, device=x.device)
    b = max(1, min(m, CHUNK_BUDGET // d))  # columns per block
    a = max(1, min(n, CHUNK_BUDGET // (d * b)))  # rows per block
    for i in range(0, n, a):
        I = slice(i, i + a)
        for k in range(0, m, b):
            J = slice(k, k + b)
            xi, yk = x[I, None], y[None, J]  # (a, 1, C, D, H, W), (1, b, C, D, H, W)
            if loss != "l1":
                cov = blur(xi * yk) - mu_x[I, None] * mu_y[None, J]  # (a, b, C, D', H', W')
                dis = 1 - _ssim_map_mean(mu_x[I, None], mu_y[None, J], var_x[I, None], var_y[None, J], cov)
            if loss != "ssim":
                l1 = (xi - yk).abs().flatten(2).mean(dim=2)  # (a, b)
            cost[I, J] = dis if loss == "ssim" else l1 if loss == "l1" else 0.5 * dis + 0.5 * l1
    return cost
