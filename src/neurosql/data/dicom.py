"""DICOM files (pydicom, the ``dicom`` extra) as 2-D images, split by patient.

Each file is one image (one slice of a series, or a radiograph). The files of
one series share a folder, so a folder holding two series is refused rather
than mixed: each series in its own folder, any number of folders below the root.
Stored values become modality values (Hounsfield units for CT) by the rescale
slope and intercept (pydicom's modality LUT), then [0, 1] by a fixed window or
per-image robust percentiles (:mod:`.intensity`); MONOCHROME1 images (white =
low values) are inverted to read like MONOCHROME2. The 80/10/10 split (or the
folds) is by patient, PatientID or else the series UID, so no subject
straddles two splits.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import NeuroSQLError
from .container import ImageData
from .intensity import scale_intensity
from .preprocess import progress_bar, stack_slices
from .splits import seeded_split, select

DICOM_SUFFIXES = (".dcm", ".dicom")
NOT_IMAGES = ("DICOMDIR",)  # the index file of a DICOM medium: DICOM, but no image
PROGRESS_MIN_FILES = 50  # a header takes ~1 ms, a slice's pixels a few


def is_dicom_name(path: Path) -> bool:
    """A DICOM file by its suffix, without pydicom (layout detection)."""
    return path.is_file() and path.suffix.lower() in DICOM_SUFFIXES


def require_pydicom():
    """The pydicom module, or an error naming the extra that installs it."""
    try:
        import pydicom
        import pydicom.errors
        import pydicom.misc
    except ImportError:
        raise NeuroSQLError("reading DICOM needs pydicom; install it with pip install 'neurosql[dicom]'") from None
    return pydicom


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def dicom_files(path: Path, pydicom) -> tuple[Path, list[Path]]:
    """(root that ids are relative to, sorted DICOM files): a .dcm suffix, or the DICM preamble
    for files named by UIDs or without a suffix."""
    if path.is_file():
        return path.parent, [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.name not in NOT_IMAGES and (is_dicom_name(p) or pydicom.misc.is_dicom(p)))
    if not files:
        raise NeuroSQLError(f"no DICOM files found in {path}; check the path")
    return path, files


def read_header(path: Path, pydicom):
    """A file's header (no pixels), checked to be one gray single-frame image."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError, struct.error) as err:
        raise NeuroSQLError(f"cannot read DICOM file {path} ({_one_line(err)}); replace or remove it") from None
    if "Rows" not in ds:
        raise NeuroSQLError(f"DICOM file {path} holds no image (a report or index); remove it from the folder")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise NeuroSQLError(f"DICOM file {path} holds {ds.NumberOfFrames} frames where one image was expected; "
                            "export the series as one file per slice")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise NeuroSQLError(f"DICOM file {path} is in colour ({ds.get('PhotometricInterpretation')}); "
                            "only gray DICOM images are read")
    return ds


def check_one_series_per_folder(files: list[Path], series: list[str]) -> None:
    """Refuse a folder whose files belong to two or more series."""
    seen: dict[Path, str] = {}
    for f, uid in zip(files, series):
        first = seen.setdefault(f.parent, uid)
        if uid != first:
            raise NeuroSQLError(f"folder {f.parent} mixes DICOM series {first} and {uid}; "
                                "put each series in its own folder")


def read_slice(path: Path, pydicom, window) -> np.ndarray:
    """One file's pixels in modality units (slope and intercept applied), scaled to [0, 1]: (H, W)."""
    try:
        from pydicom.pixels import apply_modality_lut  # pydicom >= 3
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut  # pydicom 2.4
    try:
        ds = pydicom.dcmread(path)
        values = apply_modality_lut(ds.pixel_array, ds)  # (H, W), e.g. Hounsfield units
    except Exception as err:  # pixel decoders raise anything from ValueError to RuntimeError
        raise NeuroSQLError(f"cannot decode the pixels of DICOM file {path} ({_one_line(err)}); "
                            "replace it, or install the decoder pydicom names") from None
    image = scale_intensity(values, window)
    return 1.0 - image if ds.get("PhotometricInterpretation") == "MONOCHROME1" else image


def load_dicom(path: Path, split: str, *, resolution, channels, limit, seed, progress, folds=None, window=None,
               pad_square: bool = False) -> ImageData:
    """One image per file, split by patient; headers are all read (split, series check) before any pixel."""
    pydicom = require_pydicom()
    root, files = dicom_files(path, pydicom)
    headers = [read_header(f, pydicom) for f in progress_bar(files, progress, "reading DICOM headers", unit="file",
                                                             minimum=PROGRESS_MIN_FILES)]
    series = [str(ds.get("SeriesInstanceUID", "")) for ds in headers]
    check_one_series_per_folder(files, series)
    patients = [str(ds.get("PatientID", "")) or uid or f.parent.as_posix() for ds, uid, f in zip(headers, series, files)]
    idx = select(seeded_split(len(files), groups=patients, folds=folds), split, None, limit, seed)
    chosen = [files[i] for i in idx]
    slices = [read_slice(f, pydicom, window) for f in progress_bar(chosen, progress, "reading DICOM images",
                                                                   unit="file", minimum=PROGRESS_MIN_FILES)]
    images = stack_slices(slices, resolution, channels, pad_square)  # (m, C, r, r)
    ids = [f.relative_to(root).as_posix() for f in chosen]
    return ImageData(torch.from_numpy(images), None, None, ids, f"dicom:{path}")
