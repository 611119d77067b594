"""Intensity scaling of data without a fixed range (16-bit, float, NIfTI, DICOM) to [0, 1].

8-bit images have a range, 0..255; a 16-bit file holding 12-bit data, a float
TIFF or a CT slice in Hounsfield units do not, and dividing by the type's
maximum leaves them near black. Such data are scaled by robust percentiles of
each image (each volume for NIfTI), or by a fixed ``window`` the user gives,
e.g. (-1000, 400) in HU for lung CT.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NeuroSQLError

PERCENTILES = (0.5, 99.5)  # robust intensity window: ignores a few hot or dead pixels
RANGE_RULES = {  # how each layout maps stored values to [0, 1] without a window, recorded in config.json
    "folder": "8-bit images / 255; 16-bit, 32-bit and float images: per-image [0.5, 99.5] percentiles -> [0, 1]",
    "nifti": "per-volume [0.5, 99.5] percentiles -> [0, 1]",
    "dicom": "rescale slope and intercept (modality LUT), then per-image [0.5, 99.5] percentiles -> [0, 1]",
}
RANGE_RULES["oasis"] = RANGE_RULES["celeba"] = RANGE_RULES["afhq"] = RANGE_RULES["folder"]
STORED_RULE = "as stored: uint8 / 255, floats already in [0, 1]"  # mnist, npy, medmnist


def check_window(window) -> tuple[float, float] | None:
    """(lo, hi) with finite lo < hi, from a pair or a text "lo,hi"; None stays None."""
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in (window.split(",") if isinstance(window, str) else window))
    except (TypeError, ValueError):
        raise NeuroSQLError(f"--window must be two numbers LO,HI, e.g. --window -1000,400; got {window!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise NeuroSQLError(f"--window needs finite LO < HI, got {lo:g},{hi:g}; e.g. --window -1000,400")
    return lo, hi


def scale_intensity(x: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Map [lo, hi] linearly to [0, 1], clipped: the fixed ``window``, or the [0.5, 99.5]
    percentiles of ``x``. Any shape, float32 out; constant data map to 0. O(n) (percentiles)."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = np.percentile(x, PERCENTILES) if window is None else window
    lo, hi = np.float32(lo), np.float32(hi)
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def intensity_rule(kind: str, window: tuple[float, float] | None = None) -> str:
    """The rule the ``kind`` loader applied to reach [0, 1], as recorded next to a run."""
    if window is not None and kind in RANGE_RULES:
        lo, hi = window
        prefix = "rescale slope and intercept, then " if kind == "dicom" else ""
        return f"{prefix}fixed window [{lo:g}, {hi:g}] -> [0, 1], clipped"
    return RANGE_RULES.get(kind, STORED_RULE)
