"""What the 2-D losses (:mod:`neurosql.core.losses`) and the 3-D ones (:mod:`neurosql.core.losses3d`)
share: the loss names, the SSIM constants and Gaussian window (its 1-D factor and the band matrix
of valid filtering), and the checks of their inputs."""

from __future__ import annotations

import torch

from ..errors import NeuroSQLError
from .images import check_images

LOSSES = ("ssim_l1", "l1", "l2", "ssim", "ssim_l1_yuv")  # "ssim" is the loss 1 - SSIM
ANY_CHANNEL_LOSSES = LOSSES[:4]  # defined for any channel count and for volumes; ssim_l1_yuv needs RGB images

WINDOW = 11  # side of the Gaussian window, in pixels
SIGMA = 1.5  # standard deviation of the window, in pixels
C1 = 0.01**2  # (K1 L)^2 with K1 = 0.01 and data range L = 1
C2 = 0.03**2  # (K2 L)^2 with K2 = 0.03


def _check_pair(x: torch.Tensor, y: torch.Tensor, *, dims: int, same_batch: bool, window: int) -> None:
    """Raise NeuroSQLError unless x and y are floating images (dims 4) or volumes (dims 5) SSIM can compare.

    The values are not checked: this runs on every training step.
    """
    for name, t in (("x", x), ("y", y)):
        check_images(t, name=name, dims=(dims,), min_count=0, from_numpy=False, value_range=False)
    item = "volume" if dims == 5 else "image"
    if x.shape[1:] != y.shape[1:] or (same_batch and x.shape[0] != y.shape[0]):
        what = "shapes" if same_batch else f"{item} shapes {'(C, D, H, W)' if dims == 5 else '(C, H, W)'}"
        raise NeuroSQLError(
            f"x and y {what} differ: {tuple(x.shape)} vs {tuple(y.shape)}; pass {item}s of the same size and channels"
        )
    if min(x.shape[2:]) < window:
        side = f"{window}x{window}" if dims == 4 else f"{window}³"
        raise NeuroSQLError(
            f"{item}s of size {tuple(x.shape[2:])} are smaller than the {side} SSIM window; resize them to at least {side}"
        )


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise NeuroSQLError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def _gaussian_window(device: torch.device, dtype: torch.dtype, window: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian g (window,); the 2-D window is w = g g^T (g g g in 3-D)."""
    t = torch.arange(window, dtype=torch.float64) - (window - 1) / 2  # on the CPU: MPS has no float64
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return (g / g.sum()).to(device, dtype)


def _band(size: int, g: torch.Tensor) -> torch.Tensor:
    """The (size - len(g) + 1, size) matrix B with B[p, p + t] = g[t]: valid filtering of a length-`size` signal."""
    rows = size - len(g) + 1
    cols = torch.arange(rows, device=g.device)[:, None] + torch.arange(len(g), device=g.device)  # (rows, 11)
    return g.new_zeros(rows, size).scatter_(1, cols, g.expand(rows, len(g)))
