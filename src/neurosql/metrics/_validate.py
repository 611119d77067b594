"""Input checks shared by the metrics: image batches and feature matrices."""
import numpy as np
import torch

from neurosql.core import images as core_images
from neurosql.errors import NeuroSQLError


def check_images(x, name: str, min_count: int = 1, dims: tuple[int, ...] = (4,)) -> torch.Tensor:
    """Return ``x`` as a floating tensor (n, C, H, W) in [0, 1] (or (n, C, D, H, W) with 5 in
    ``dims``) or raise NeuroSQLError."""
    # A small slack lets bilinear resampling overshoot pass; anything larger is a range bug.
    return core_images.check_images(
        x, name=name, dims=dims, min_count=min_count, convert=False, from_numpy=True, value_range=True, slack=1e-3
    )


def check_same_image_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    """Raise NeuroSQLError unless two batches share (C, H, W)."""
    if a.shape[1:] != b.shape[1:]:
        raise NeuroSQLError(
            f"{names} must share (C, H, W); got {tuple(a.shape[1:])} and {tuple(b.shape[1:])}"
        )


def check_features(f, name: str, min_count: int = 2) -> np.ndarray:
    """Return ``f`` as a float64 array (n, d) with n >= min_count or raise NeuroSQLError."""
    f = np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f, dtype=np.float64)
    if f.ndim != 2:
        raise NeuroSQLError(f"{name} must be a feature matrix (n, d); got shape {f.shape}")
    if f.shape[0] < min_count:
        raise NeuroSQLError(f"{name} needs at least {min_count} rows; got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise NeuroSQLError(f"{name} contains NaN or inf; check the images fed to the feature net")
    return f
