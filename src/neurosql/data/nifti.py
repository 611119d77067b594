"""NIfTI volumes (nibabel) as 2-D slices, or with ``volumes`` as whole 3-D volumes; split by file.

Volumes are reoriented to RAS+ first, so ``axis`` 0, 1, 2 means sagittal,
coronal, axial whatever the scanner's storage order; each slice is rotated so
that anterior / superior is up. Whole volumes are cropped to the bounding box
of their non-zero voxels (after the percentile scaling: the background), padded
to a cube around it and resampled to ``resolution``³ (default 32); the result's
voxel-to-world affine (``ImageData.affine``, from the first file) lets samples be
written back as NIfTI in the same space.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
from nibabel.filebasedimages import ImageFileError
import numpy as np
import torch

from ..errors import NeuroSQLError
from .container import ImageData
from .intensity import scale_intensity
from .preprocess import MIN_VOLUME_SIDE, progress_bar, resize_volumes, stack_slices
from .splits import seeded_split, select, stratified_subset
from .visible import visible_files

PROGRESS_MIN_VOLUMES = 10  # a volume takes ~0.1-1 s to read
VOLUME_SIDE = 32  # default side of whole volumes: a 32³ volume has the voxels of a 181² slice
UNREADABLE = (ImageFileError, OSError, ValueError, EOFError)  # what nibabel raises for damaged files


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".nii", ".nii.gz"))


def nifti_files(path: Path) -> tuple[Path, list[Path]]:
    """(root that ids are relative to, sorted .nii/.nii.gz files) for a file or a folder."""
    if path.is_file():
        if not is_nifti(path):
            raise NeuroSQLError(f"{path} is not a .nii or .nii.gz file; pass a NIfTI file or a folder of them")
        return path.parent, [path]
    files = sorted(p for p in visible_files(path) if is_nifti(p))
    if not files:
        raise NeuroSQLError(f"no .nii or .nii.gz files found in {path}; check the path")
    return path, files


def finite_voxels(data: np.ndarray, path: Path) -> np.ndarray:
    """``data`` with NaN and Inf voxels set to 0 (the background), said in one warning naming the file."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return data
    warnings.warn(f"NIfTI file {path} holds {int(bad.sum()):,} NaN or Inf voxels; they were set to 0", stacklevel=4)
    return np.where(bad, np.float32(0), data)


def volume_slices(path: Path, axis: int, window=None) -> list[tuple[int, int, np.ndarray]]:
    """(volume, slice, image (H, W)) for every non-constant slice of a 3-D or 4-D file."""
    img = nib.as_closest_canonical(nib.load(path))
    data = finite_voxels(np.asanyarray(img.dataobj, dtype=np.float32), path)  # (X, Y, Z) or (X, Y, Z, T)
    volumes = data[..., None] if data.ndim == 3 else data  # (X, Y, Z, T)
    found = []
    for v in range(volumes.shape[3]):
        volume = scale_intensity(volumes[..., v], window)
        for k in range(volume.shape[axis]):
            image = np.take(volume, k, axis=axis)
            if image.max() > image.min():  # all-zero / constant slices carry no anatomy
                found.append((v, k, np.rot90(image).copy()))
    return found


def cubic_volume(path: Path, side: int, window=None) -> tuple[np.ndarray, np.ndarray]:
    """One file's RAS+ volume scaled to [0, 1], cropped to its non-zero bounding box, padded to a
    centred cube and resampled: ((side, side, side), its (4, 4) voxel-to-world affine)."""
    img = nib.as_closest_canonical(nib.load(path))
    volume = scale_intensity(finite_voxels(np.asanyarray(img.dataobj, dtype=np.float32), path), window)  # (X, Y, Z)
    found = np.argwhere(volume > 0)
    lo, hi = (found.min(0), found.max(0) + 1) if len(found) else (np.zeros(3, int), np.array(volume.shape))
    edge = int((hi - lo).max())
    start = lo - (edge - (hi - lo)) // 2  # the cube's corner in the file's voxels (may lie outside)
    cube = np.zeros((edge,) * 3, np.float32)
    src = [slice(max(s, 0), min(s + edge, n)) for s, n in zip(start, volume.shape)]
    dst = [slice(a.start - s, a.stop - s) for a, s in zip(src, start)]
    cube[tuple(dst)] = volume[tuple(src)]
    scale = edge / side  # one output voxel spans this many input voxels along each axis
    to_input = np.diag([scale, scale, scale, 1.0])
    to_input[:3, 3] = start + (scale - 1) / 2  # centre of output voxel 0 in input voxels
    return resize_volumes(cube[None, None], side)[0, 0], img.affine @ to_input


def _load_volumes(files: list[Path], root: Path, path: Path, *, resolution, channels, limit, seed, progress,
                  window) -> ImageData:
    """Whole volumes (m, 1, R, R, R), one per file (see :func:`cubic_volume`)."""
    if channels not in (None, 1):
        raise NeuroSQLError(f"NIfTI volumes are gray; drop --channels {channels}")
    side = resolution or VOLUME_SIDE
    if side < MIN_VOLUME_SIDE:
        raise NeuroSQLError(f"{side}³ volumes are smaller than the {MIN_VOLUME_SIDE}³ SSIM window; "
                            f"pass --resolution {MIN_VOLUME_SIDE} or more")
    if limit is not None:
        files = [files[i] for i in stratified_subset(len(files), limit, seed)]
    volumes, affine = [], None
    for f in progress_bar(files, progress, "reading NIfTI volumes", unit="file", minimum=PROGRESS_MIN_VOLUMES):
        try:
            volume, file_affine = cubic_volume(f, side, window)
        except UNREADABLE as err:
            raise NeuroSQLError(f"cannot read NIfTI file {f} ({err}); replace it with an intact copy") from None
        volumes.append(volume[None])
        affine = file_affine if affine is None else affine
    ids = [f.relative_to(root).as_posix() for f in files]
    return ImageData(torch.from_numpy(np.stack(volumes)), None, None, ids, f"nifti:{path}", affine=affine)


def load_nifti(path: Path, split: str, *, resolution, channels, limit, seed, progress, axis: int = 2,
               volumes: bool = False, folds=None, window=None, pad_square: bool = False) -> ImageData:
    """Slices along ``axis`` of each volume, or with ``volumes`` each whole 3-D volume; files split
    80/10/10 so a volume never straddles splits. ``window``: fixed intensity window instead of
    percentiles; ``pad_square``: pad slices to a square instead of cropping them."""
    if axis not in (0, 1, 2):
        raise NeuroSQLError(f"NIfTI axis must be 0, 1 or 2, got {axis!r}")
    if volumes and pad_square:
        raise NeuroSQLError("--pad-square applies to 2-D slices; whole volumes are always padded to a cube, drop it")
    root, files = nifti_files(path)
    for f in files:  # headers only: fail before reading any voxel
        try:
            shape = nib.load(f).shape
        except UNREADABLE as err:
            raise NeuroSQLError(f"cannot read NIfTI file {f} ({err}); replace it with an intact copy") from None
        if volumes and len(shape) != 3:
            raise NeuroSQLError(f"NIfTI file {f} has shape {shape}: --volumes reads 3-D volumes, and its fourth axis "
                                f"holds {shape[3] if len(shape) > 3 else '?'} volumes (a time series); save the volume "
                                "you want as its own 3-D file")
        if len(shape) not in (3, 4):
            raise NeuroSQLError(f"NIfTI file {f} is {len(shape)}-D; only 3-D volumes or 4-D series of volumes are supported")
    chosen = [files[i] for i in select(seeded_split(len(files), folds=folds), split)]
    if volumes:
        return _load_volumes(chosen, root, path, resolution=resolution, channels=channels, limit=limit, seed=seed,
                             progress=progress, window=window)
    slices, ids = [], []
    for f in progress_bar(chosen, progress, "reading NIfTI volumes", unit="file", minimum=PROGRESS_MIN_VOLUMES):
        name = f.relative_to(root).as_posix()
        try:
            found = volume_slices(f, axis, window)
        except UNREADABLE as err:
            raise NeuroSQLError(f"cannot read NIfTI file {f} ({err}); replace it with an intact copy") from None
        for v, k, image in found:
            slices.append(image)
            ids.append(f"{name}:{v}:{k}")
    if not slices:
        raise NeuroSQLError(f"every slice of the NIfTI data in {path} is empty or constant; check the files")
    if limit is not None:
        keep = stratified_subset(len(slices), limit, seed)
        slices, ids = [slices[i] for i in keep], [ids[i] for i in keep]
    images = stack_slices(slices, resolution, channels, pad_square)  # (m, C, r, r)
    return ImageData(torch.from_numpy(images), None, None, ids, f"nifti:{path}")
