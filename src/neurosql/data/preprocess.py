"""Shared preprocessing: decode image files, convert channels, center-crop (or pad) to a square, resize.

All images travel as float32 arrays (..., C, H, W) in [0, 1]; resizing works on
Pillow "F" planes, so float sources (NIfTI, .npy) keep their precision.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..errors import NeuroSQLError
from .intensity import scale_intensity

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's convert("L")
MIN_VOLUME_SIDE = 7  # the 3-D SSIM window's side (neurosql.core.losses3d.WINDOW)
PROGRESS_MIN = 200  # fewer files decode in well under a second: no bar
# Pillow signals malformed or truncated files with any of these, depending on the plugin.
# what PIL raises for damaged files; images past PIL's decompression-bomb limit are refused, not just warned of
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError,
              Image.DecompressionBombWarning)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Gray <-> RGB: (..., C, H, W) -> (..., channels, H, W); RGB to gray by luma weights."""
    have = x.shape[-3]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return np.repeat(x, 3, axis=-3)
    if have == 3 and channels == 1:
        return np.tensordot(x, LUMA, axes=([-3], [0]))[..., None, :, :].astype(np.float32)
    raise NeuroSQLError(f"cannot convert {have}-channel images to {channels} channels; use 1 or 3 channels")


def center_crop(x: np.ndarray) -> np.ndarray:
    """Largest centred square: (..., H, W) -> (..., s, s), s = min(H, W)."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def pad_square(x: np.ndarray) -> np.ndarray:
    """Smallest centred square holding the whole image, padded with 0 (black):
    (..., H, W) -> (..., s, s), s = max(H, W). Keeps what a crop would cut off."""
    h, w = x.shape[-2:]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    pad = [(0, 0)] * (x.ndim - 2) + [(top, s - h - top), (left, s - w - left)]
    return np.pad(x, pad)


def square_side(h: int, w: int, pad: bool = False) -> int:
    """Side of the square that :func:`center_crop` (or with ``pad`` :func:`pad_square`) makes of H x W."""
    return max(h, w) if pad else min(h, w)


def resize(x: np.ndarray, resolution: int) -> np.ndarray:
    """Antialiased Lanczos resize of square images: (..., s, s) -> (..., r, r), r = resolution."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    planes = x.reshape(-1, *x.shape[-2:]).astype(np.float32, copy=False)  # (m·C, s, s)
    out = np.stack(
        [np.asarray(Image.fromarray(p).resize((resolution, resolution), Image.Resampling.LANCZOS)) for p in planes]
    )
    np.clip(out, 0.0, 1.0, out=out)  # Lanczos lobes overshoot at sharp edges
    return out.reshape(*x.shape[:-2], resolution, resolution)


def resize_volumes(x: np.ndarray, side: int) -> np.ndarray:
    """Cubic volumes (m, C, s, s, s) -> (m, C, side, side, side): box averaging when
    shrinking (no aliasing), trilinear when enlarging; float32 in [0, 1]."""
    if x.shape[-1] == side:
        return x.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    mode = dict(mode="area") if side < x.shape[-1] else dict(mode="trilinear", align_corners=False)
    return torch.nn.functional.interpolate(t, size=(side,) * 3, **mode).clamp_(0, 1).numpy()


def preprocess(x: np.ndarray, resolution: int | None, channels: int, pad: bool = False) -> np.ndarray:
    """Channels, then center crop (or with ``pad`` pad to a square), then resize (None keeps the
    square's size): (..., C, H, W) float in [0, 1]."""
    x = (pad_square if pad else center_crop)(to_channels(x, channels))
    return (x if resolution is None else resize(x, resolution)).astype(np.float32, copy=False)


def stack_slices(slices: list[np.ndarray], resolution: int | None, channels: int | None, pad: bool = False) -> np.ndarray:
    """Gray images (H, W) of any sizes -> (m, C, r, r) float32 by :func:`preprocess`; r defaults to
    the smallest square side among them (native when all share a size), C to 1."""
    resolution = resolution or min(square_side(*s.shape, pad) for s in slices)
    return np.stack([preprocess(s[None], resolution, channels or 1, pad) for s in slices])


def _pixels(img: Image.Image, channels: int, window: tuple[float, float] | None) -> np.ndarray:
    """A decoded Pillow image as (C, H, W) float32 in [0, 1] with C = channels: 8-bit values / 255,
    16-bit, 32-bit and float gray by robust percentiles (see :mod:`.intensity`), or any by ``window``."""
    if img.mode.startswith("I") or img.mode == "F":
        # No fixed range (12-bit data in a 16-bit file), and Pillow's convert("L") clips to 255.
        a = scale_intensity(np.asarray(img, dtype=np.float32), window)[None]
        return to_channels(a, channels)
    a = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    a = a / 255.0 if window is None else scale_intensity(a, window)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def decode_image(path: Path, resolution: int, channels: int, window=None, pad: bool = False) -> np.ndarray:
    """One image file -> (channels, resolution, resolution) float32 in [0, 1]; a multi-page
    file (a TIFF stack) is refused, as it is many images where one was expected."""
    with bombs_refused(), Image.open(path) as img:
        pages = getattr(img, "n_frames", 1)
        if pages > 1:
            raise NeuroSQLError(f"{path} holds {pages} pages (a TIFF stack) where one image was expected; save each "
                                "page as its own file, or a volume as NIfTI")
        w, h = img.size
        s = square_side(w, h, pad)
        # JPEG can decode at 1/2, 1/4 or 1/8 scale in the DCT domain, far faster for
        # large photos; draft never goes below the requested size, so the crop
        # still has at least `resolution` pixels for the antialiased resize.
        img.draft("L" if channels == 1 else "RGB", (math.ceil(resolution * w / s), math.ceil(resolution * h / s)))
        x = _pixels(img, channels, window)
    return preprocess(x, resolution, channels, pad)


@contextmanager
def bombs_refused():
    """A block in which PIL's decompression-bomb warning is raised, so the file counts as unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def progress_bar(items: list, progress: bool, desc: str, unit: str = "img", minimum: int = PROGRESS_MIN):
    """``items`` wrapped in a tqdm bar when ``progress`` and there are more than ``minimum`` of them."""
    return tqdm(items, desc=desc, unit=unit, disable=not (progress and len(items) > minimum))


def _none_readable(paths: list[Path]) -> NeuroSQLError:
    return NeuroSQLError(
        f"none of the {len(paths)} image files could be read (e.g. {paths[0]}); check they are valid PNG/JPEG/BMP/TIFF files"
    )


def probe_files(paths: list[Path], progress: bool = True, pad: bool = False) -> tuple[int, int]:
    """From the headers only: (smallest square side, see :func:`square_side`; majority channel count: 1 or 3)."""
    sides, gray = [], []
    for path in progress_bar(paths, progress, "reading image headers"):
        try:
            with bombs_refused(), Image.open(path) as img:
                sides.append(square_side(*img.size, pad))
                gray.append(img.mode in GRAY_MODES)
        except UNREADABLE:
            continue  # counted once, when decode_files skips it
    if not sides:
        raise _none_readable(paths)
    votes = Counter(gray)
    return min(sides), 1 if votes[True] > votes[False] else 3


def decode_files(
    paths: list[Path], resolution: int, channels: int, progress: bool = True, window=None, pad: bool = False
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode and preprocess files (see :func:`decode_image`), skipping unreadable ones with one warning.

    Returns images (m, channels, r, r) float32 and the (m,) indices of the paths kept.
    """
    images, kept = [], []
    for i, path in enumerate(progress_bar(paths, progress, "decoding images")):
        try:
            images.append(decode_image(path, resolution, channels, window, pad))
        except NeuroSQLError:
            raise  # readable, but not what was asked for: a ValueError that must not count as unreadable
        except UNREADABLE:
            continue
        kept.append(i)
    skipped = len(paths) - len(kept)
    if not kept:
        raise _none_readable(paths)
    if skipped:
        first = paths[np.setdiff1d(np.arange(len(paths)), kept)[0]]
        warnings.warn(f"skipped {skipped} of {len(paths)} unreadable or oversized image files (e.g. {first})", stacklevel=3)
    return torch.from_numpy(np.stack(images)), np.asarray(kept, dtype=np.int64)
