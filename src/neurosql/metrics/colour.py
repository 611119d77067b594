"""Colour of RGB images, which the feature and SSIM metrics barely see (issue 21).

- :func:`colour_fd`: Fréchet distance between Gaussian fits of per-image colour
  statistics of two sets, each image summarised by its mean Y, U, V (BT.601)
  and the standard deviations of its U and V (5-d). Grey or hue-shifted samples
  move the U, V means; washed-out ones shrink the U, V spreads.
- :func:`colour_error`: mean absolute difference between the mean RGB colours of
  paired images (an image and its reconstruction) over a grid of regions, so a
  grey shape on the right background still counts.
"""
import numpy as np
import torch
import torch.nn.functional as F

from neurosql.core.losses import to_yuv
from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_images, check_same_image_shape
from neurosql.metrics.fid import fid_from_features

COLOUR_KEYS = ("colour_fd",)


def colour_stats(images: torch.Tensor) -> np.ndarray:
    """Per-image mean Y, U, V and std of U, V: (n, 3, H, W) -> (n, 5) float64."""
    yuv = to_yuv(images.double()).flatten(2)  # (n, 3, H W)
    return torch.cat([yuv.mean(2), yuv[:, 1:].std(2, correction=0)], dim=1).numpy()


def colour_fd(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between the Gaussian fits of ``colour_stats`` of real (n, 3, H, W) and fake (m, 3, H, W).

    0 for identical sets; O((n + m) H W). Reference (real vs real) is the FD of two real splits.
    """
    real, fake = check_images(real, "real", 2), check_images(fake, "fake", 2)
    check_same_image_shape(real, fake, "real and fake")
    return fid_from_features(colour_stats(real), colour_stats(fake))


def colour_error(x: torch.Tensor, y: torch.Tensor, blocks: int = 4) -> float:
    """Mean |mean colour of x_i - mean colour of y_i| over images, RGB channels and blocks x blocks regions.

    Shapes: x, y (n, 3, H, W) paired images in [0, 1]; the regions are those of adaptive average
    pooling (blocks = 1 compares whole-image mean colours). Range [0, 1].
    """
    x, y = check_images(x, "x", 1), check_images(y, "y", 1)
    if x.shape != y.shape or x.shape[1] != 3:
        raise NeuroSQLError(f"colour_error compares paired RGB images of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    if not 1 <= blocks <= min(x.shape[2:]):
        raise NeuroSQLError(f"blocks must be between 1 and the image side {min(x.shape[2:])}; got {blocks}")
    pool = lambda t: F.adaptive_avg_pool2d(t.double(), blocks)  # (n, 3, blocks, blocks)
    return float((pool(x) - pool(y)).abs().mean())


def colour_metrics(real: torch.Tensor, fake: torch.Tensor) -> dict:
    """``colour_fd`` of RGB sets, nothing for other channel counts (grey reports stay as they were)."""
    return {"colour_fd": colour_fd(real, fake)} if real.shape[1] == 3 else {}
