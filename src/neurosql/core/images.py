"""Validation of image batches: the one check every layer runs, with its policy stated per call.

An image batch is a tensor (n, C, H, W), or (n, C, D, H, W) for volumes, with
values in [0, 1]. Callers differ only in what they take and what they promise:
user data for ``fit`` may be any array-like, uint8 or 3-D (``convert``,
``add_channel``); metrics take floats with a little resampling overshoot
(``slack``); the losses take tensors and skip the pass over the values
(``value_range=False``) because they run on every training step.
:func:`check_images` runs the checks below in this order, so the same input
gets the same message wherever it is refused; an on-disk array streamed in
chunks runs them one by one (``neurosql.data.check_lazy_images``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from ..errors import NeuroSQLError

_LAYOUTS = {4: "4-D (n, C, H, W)", 3: "3-D (n, H, W)", 5: "5-D volumes (n, C, D, H, W)"}


def check_images(
    x,
    *,
    name: str = "images",
    dims: tuple[int, ...] = (4,),
    min_count: int = 1,
    add_channel: bool = False,
    convert: bool = False,
    from_numpy: bool = True,
    value_range: bool = True,
    slack: float = 0.0,
) -> torch.Tensor:
    """Return ``x`` as a validated image batch, or raise NeuroSQLError with the fix.

    name: how messages call ``x`` (a parameter name, or "images").
    dims: accepted numbers of axes, 4 for (n, C, H, W), 5 for volumes (n, C, D, H, W).
    min_count: the fewest images accepted.
    add_channel: read 3-D (n, H, W) as (n, 1, H, W).
    convert: take any numeric array-like, scale uint8 by 1/255 and return
        float32 on the input's device; otherwise floats are required and ``x``
        is returned as given.
    from_numpy: without ``convert``, also take a numpy array (wrapped, not copied).
    value_range: refuse NaN, Inf and values outside [0, 1]; costs one pass over x.
    slack: how far outside [0, 1] values may stray (resampling overshoot).
    """
    x = _as_tensor(x, name=name, dims=dims, add_channel=add_channel, convert=convert, from_numpy=from_numpy)
    if add_channel and x.ndim == 3:
        x = x.unsqueeze(1)  # (n, H, W) -> (n, 1, H, W)
    check_shape(tuple(x.shape), name=name, dims=dims, min_count=min_count, add_channel=add_channel)
    if check_dtype(x.dtype, name=name, convert=convert) == "uint8":
        return x.float() / 255.0
    if value_range:
        check_values([x], name=name, slack=slack)
    return x.float() if convert else x


def _as_tensor(x, *, name: str, dims, add_channel: bool, convert: bool, from_numpy: bool) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if convert:
        try:
            return torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise NeuroSQLError(f"{name} must be a numeric array or tensor ({err})") from None
    if from_numpy and isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    kinds = "a torch tensor or numpy array" if from_numpy else "a torch tensor"
    raise NeuroSQLError(f"{name} must be {kinds}, {_layouts(dims, add_channel)}; got {type(x).__name__}")


def _layouts(dims, add_channel: bool) -> str:
    """The accepted layouts in words, e.g. "4-D (n, C, H, W) or 3-D (n, H, W)"."""
    names = [_LAYOUTS[d] for d in (4, 3, 5) if d in dims or (d == 3 and add_channel)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_shape(shape: tuple[int, ...], *, name: str, dims, min_count: int, add_channel: bool = False) -> None:
    """Raise unless ``shape`` (after any added channel axis) has an accepted number of axes,
    is channels first and holds at least ``min_count`` images."""
    if len(shape) not in dims:
        raise NeuroSQLError(
            f"{name} must be {_layouts(dims, add_channel)}, got shape {shape}; reshape or stack your images"
        )
    if shape[1] not in (1, 3) and shape[-1] in (1, 3):
        raise NeuroSQLError(
            f"{name} of shape {shape} look channels-last; "
            "reorder them to (n, C, H, W) or (n, C, D, H, W), e.g. x.permute(0, 3, 1, 2)"
        )
    if shape[0] < min_count:
        where = "" if name == "images" else f" in {name}"
        raise NeuroSQLError(f"need at least {min_count} images{where}, got {shape[0]}")


def check_dtype(dtype, *, name: str, convert: bool) -> str:
    """The kind, "uint8" or "float", of a torch or numpy dtype the policy takes (uint8 only with ``convert``)."""
    if isinstance(dtype, torch.dtype):
        kind = "uint8" if dtype == torch.uint8 else "float" if dtype.is_floating_point else "other"
    else:
        kind = "uint8" if dtype == np.uint8 else "float" if np.issubdtype(dtype, np.floating) else "other"
    if kind == "float" or (kind == "uint8" and convert):
        return kind
    if convert:
        raise NeuroSQLError(
            f"{name} must be uint8 or float in [0, 1], got {dtype}; convert them, e.g. x.astype('uint8')"
        )
    raise NeuroSQLError(f"{name} must be float in [0, 1], got {dtype}; scale them, e.g. x.float() / 255 for uint8")


def check_values(parts: Iterable[torch.Tensor], *, name: str, slack: float = 0.0) -> None:
    """Raise unless every part of a batch is finite and within [-slack, 1 + slack].

    The parts may be chunks streamed from disk; the range reported is over all of them.
    """
    lo, hi = math.inf, -math.inf
    for part in parts:
        if not bool(torch.isfinite(part).all()):
            raise NeuroSQLError(f"{name} contain NaN or Inf; remove or repair those images")
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    if lo < -slack or hi > 1 + slack:
        raise NeuroSQLError(
            f"{name} must lie in [0, 1], got values in [{lo:g}, {hi:g}]; "
            "scale your data to [0, 1], e.g. divide uint8 images by 255"
        )
