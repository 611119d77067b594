"""MedMNIST archives: the official ``.npz`` layout with its own splits and labels.

A MedMNIST file (e.g. ``pathmnist.npz``, ``organmnist3d_64.npz``) holds
``{train,val,test}_images`` as uint8 arrays (n, H, W) for gray 2-D sets,
(n, H, W, 3) for RGB ones and (n, D, H, W) for 3-D sets, and
``{train,val,test}_labels`` as (n, 1) class ids, or (n, k) 0/1 columns for the
multi-label ChestMNIST. The user supplies the file; nothing is ever downloaded.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import NeuroSQLError
from .archives import Archive
from .container import ImageData
from .preprocess import preprocess, resize_volumes
from .splits import EmptySplitError, select

PARTS = ("train", "val", "test")
KEYS = tuple(f"{part}_{what}" for part in PARTS for what in ("images", "labels"))
VOLUME_SIDES = (16, 28, 32, 64)  # cube sides the 3-D generators build


def is_medmnist(path: Path) -> bool:
    """A .npz whose members include ``train_images`` (the zip directory only is read)."""
    if not (path.is_file() and path.suffix.lower() == ".npz"):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "train_images.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _open(path: Path) -> Archive:
    if path.suffix.lower() != ".npz":
        raise NeuroSQLError(f"medmnist data must be a MedMNIST .npz file, got {path.name}")
    archive = Archive(path, "replace the MedMNIST file with an intact copy")
    missing = [key for key in KEYS if key not in archive.files]
    if missing:
        archive.close()
        raise NeuroSQLError(
            f"MedMNIST file {path} lacks the key(s) {', '.join(missing)}; it needs {', '.join(KEYS)} "
            "(for other .npz files use 'npy:PATH')"
        )
    return archive


def _class_ids(raw: np.ndarray, n: int, path: Path, part: str) -> np.ndarray | None:
    """(n,) int64 class ids from (n,) or (n, 1) labels; None for multi-label (n, k > 1)."""
    raw = np.asarray(raw)
    if raw.ndim == 0 or len(raw) != n:
        count = 0 if raw.ndim == 0 else len(raw)
        raise NeuroSQLError(f"MedMNIST file {path}: {part}_labels holds {count} labels for {n} images; repair the file")
    if raw.ndim == 2 and raw.shape[1] > 1:
        return None
    if raw.ndim > 2 or not np.issubdtype(raw.dtype, np.integer) or (raw.size and raw.min() < 0):
        raise NeuroSQLError(
            f"MedMNIST file {path}: {part}_labels must be non-negative integers of shape (n,) or (n, 1), "
            f"got {raw.dtype} {raw.shape}"
        )
    return raw.reshape(n).astype(np.int64)


def _is_volume(shape: tuple, path: Path) -> bool:
    """(n, H, W) gray, (n, H, W, 3) RGB -> False; (n, D, H, W) -> True; otherwise an error."""
    if len(shape) == 3 and shape[1] == shape[2]:
        return False
    if len(shape) == 4 and shape[3] == 3 and shape[1] == shape[2]:
        return False
    if len(shape) == 4 and shape[1] == shape[2] == shape[3]:
        return True
    raise NeuroSQLError(
        f"MedMNIST file {path} holds images of shape {shape}; expected (n, H, W), (n, H, W, 3) or (n, D, H, W) "
        "with square sides"
    )


def _read_part(archive, part: str, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    images = archive[f"{part}_images"]
    if images.dtype != np.uint8:
        raise NeuroSQLError(f"MedMNIST file {path}: {part}_images are {images.dtype}; the official files hold uint8")
    return images, _class_ids(archive[f"{part}_labels"], len(images), path, part)


def load_medmnist(path: Path, split: str, *, resolution, channels, limit, seed) -> ImageData:
    """One official split ("all" joins them) of a MedMNIST .npz; volumes come as (n, 1, D, H, W).

    2-D images get the usual channel conversion, center crop and resize; 3-D
    volumes are gray, resampled only to a cube side the 3-D generators build.
    """
    with _open(path) as archive:
        parts = [(p, *_read_part(archive, p, path)) for p in (PARTS if split == "all" else (split,))]
    shapes = {p: x.shape for p, x, _ in parts}
    volume = {_is_volume(shape, path) for shape in shapes.values()}
    if len(volume) > 1 or len({shape[1:] for shape in shapes.values()}) > 1:
        raise NeuroSQLError(f"MedMNIST file {path} has splits of different image shapes {shapes}; repair the file")
    volume = volume.pop()
    multi_label = any(y is None for _, _, y in parts)
    if multi_label:
        warnings.warn(f"{path.name} is multi-label (e.g. ChestMNIST): loaded without class labels", stacklevel=3)
    labels = None if multi_label else np.concatenate([y for _, _, y in parts])
    ids = [f"{p}:{i}" for p, x, _ in parts for i in range(len(x))]
    x = np.concatenate([x for _, x, _ in parts])
    if len(x) == 0:
        raise EmptySplitError(f"split '{split}' of MedMNIST file {path} is empty; use another split")
    idx = select(np.full(len(x), "all"), "all", labels, limit, seed)
    rows = x[idx].astype(np.float32) / 255.0
    if volume:
        images = _volumes(rows, resolution, channels, path)
    else:
        rows = rows[:, None] if rows.ndim == 3 else rows.transpose(0, 3, 1, 2)  # (m, C, H, W)
        images = preprocess(rows, resolution, channels or rows.shape[1])
    n_classes = 0 if labels is None else int(labels.max()) + 1
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(images)),
        None if labels is None else labels[idx],
        None if labels is None else [str(c) for c in range(n_classes)],
        [ids[i] for i in idx],
        f"medmnist:{path}",
    )


def _volumes(rows: np.ndarray, resolution, channels, path: Path) -> np.ndarray:
    """(m, D, H, W) in [0, 1] -> (m, 1, r, r, r) with r = resolution or the native side."""
    if channels not in (None, 1):
        raise NeuroSQLError(f"MedMNIST file {path} holds gray 3-D volumes; drop --channels {channels} or use 1")
    if resolution is not None and resolution not in VOLUME_SIDES:
        raise NeuroSQLError(
            f"MedMNIST file {path} holds 3-D volumes ({rows.shape[1]}³) but resolution {resolution} was asked; "
            f"3-D data resamples to {', '.join(map(str, VOLUME_SIDES))} per side, so pick one of those"
        )
    return resize_volumes(rows[:, None], resolution or rows.shape[1])
