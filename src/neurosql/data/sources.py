"""Data specs: parse ``KIND:PATH`` or detect the layout of a bare path, then load."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import NeuroSQLError
from .arrays import load_mnist, load_mnist5k, load_npy
from .config import DataConfig
from .container import ImageData
from .dicom import is_dicom_name, load_dicom
from .files import OASIS_FOLDERS, VAL_SERVES_AS_TEST, load_files, require_dir
from .intensity import check_window
from .medmnist import is_medmnist, load_medmnist
from .nifti import is_nifti, load_nifti
from .preprocess import is_image_file
from .splits import SPLITS, EmptySplitError
from .visible import is_hidden, visible_files

SOURCES = ("mnist5k", "mnist", "folder", "celeba", "afhq", "oasis", "nifti", "dicom", "npy", "medmnist")
# layout-specific keyword options of load_data; "folds" where the splits are ours, not the data set's;
# "window" (fixed intensity window) and "pad_square" (pad instead of crop) where users bring their own scans
OPTIONS = {"nifti": {"axis", "volumes", "folds", "window", "pad_square"}, "folder": {"folds", "window", "pad_square"},
           "dicom": {"folds", "window", "pad_square"}, "oasis": {"folds"}, "npy": {"folds"}}
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]+):(.*)$", re.DOTALL)  # two letters at least: "C:\" is a path


def _is_afhq(path: Path) -> bool:
    train = path / "train"
    return train.is_dir() and {"cat", "dog", "wild"} <= {p.name for p in train.iterdir() if p.is_dir()}


def _is_oasis(path: Path) -> bool:
    names = {p.name.casefold() for p in path.iterdir() if p.is_dir() and not is_hidden(p.name)}
    return bool(names) and names <= set(OASIS_FOLDERS)


MARKERS = {  # layouts recognised by a landmark at the top of the folder
    "celeba": lambda p: (p / "img_align_celeba").is_dir(),
    "afhq": _is_afhq,
    "mnist": lambda p: any((p / f"train-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")),
    "oasis": _is_oasis,
}


def detect_layout(path: Path) -> str:
    """The one layout a bare path fits, or an error asking for an explicit KIND: prefix."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".npy", ".npz")):
            return "medmnist" if is_medmnist(path) else "npy"
        if name.endswith((".nii", ".nii.gz")):
            return "nifti"
        raise NeuroSQLError(f"cannot tell the layout of file {path}; pass a .npy/.npz, a .nii/.nii.gz or a folder")
    require_dir(path, "folder")
    found = [kind for kind, marker in MARKERS.items() if marker(path)]
    if not found:
        seen = {"nifti": False, "dicom": False, "folder": False}
        for p in visible_files(path):
            for kind, test in (("nifti", is_nifti), ("dicom", is_dicom_name), ("folder", is_image_file)):
                seen[kind] = seen[kind] or test(p)
            if all(seen.values()):
                break
        found = [kind for kind, present in seen.items() if present]
    if len(found) > 1:
        raise NeuroSQLError(
            f"{path} fits several layouts ({', '.join(found)}); say which with a prefix, e.g. '{found[0]}:{path}'"
        )
    if not found:
        raise NeuroSQLError(f"no images, NIfTI volumes, DICOM or MNIST files found in {path}; check the path")
    return found[0]


def parse_spec(spec: str | None) -> tuple[str, str | None]:
    """``(kind, absolute path)`` of a data spec; ``("mnist5k", None)`` for the default."""
    if spec is None or not spec.strip() or spec.strip() == "mnist5k":
        return "mnist5k", None
    match = _PREFIX.match(spec)
    if match and not Path(spec).exists():  # an existing path that happens to contain ':' stays a path
        kind, rest = match.group(1).lower(), match.group(2)
        if kind not in SOURCES:
            raise NeuroSQLError(f"unknown data kind '{match.group(1)}'; use one of {', '.join(SOURCES)}")
        if kind == "mnist5k":
            raise NeuroSQLError("'mnist5k' is embedded and takes no path; use 'mnist5k', or 'mnist:PATH' for IDX files")
        if not rest:
            raise NeuroSQLError(f"'{kind}:' needs a path after the colon, e.g. '{kind}:/data/{kind}'")
        path = Path(rest).expanduser()
        if not path.exists():
            raise NeuroSQLError(f"data path {path} does not exist; check the path in '{spec}'")
        return kind, str(path.resolve())
    path = Path(spec).expanduser()
    if not path.exists():
        hint = f"'{spec}:PATH'" if spec in SOURCES else "an existing path, 'KIND:PATH' or 'mnist5k'"
        raise NeuroSQLError(f"data path {spec} does not exist; pass {hint}")
    return detect_layout(path), str(path.resolve())


def load_data(
    spec: str | None = None,
    split: str = "train",
    *,
    resolution: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    **options,
) -> ImageData:
    """Load one split of a data source as images (n, C, H, W) float32 in [0, 1].

    ``spec``: see the package docstring. ``resolution``: square side after the
    center crop (default: the layout's, see the package docstring). ``channels``:
    1 (gray) or 3 (RGB). ``limit``: seeded stratified cap on the number of images,
    drawn with ``seed`` after the split. ``options``: ``axis`` and ``volumes`` for NIfTI; ``folds``
    = (k, i) for k-fold cross-validation where the splits are ours (folder, oasis, nifti, dicom, npy);
    ``window`` = (lo, hi), a fixed intensity window instead of percentiles, and ``pad_square``, pad
    to a square instead of cropping (folder, nifti, dicom).
    """
    if split not in SPLITS:
        raise NeuroSQLError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    spec = DataConfig.checked(spec, resolution, channels, limit, options).spec
    kind, path = parse_spec(spec)
    unknown = sorted(set(options) - OPTIONS.get(kind, set()))
    if unknown:
        accepted = ", ".join(sorted(OPTIONS.get(kind, ()))) or "none"
        if unknown == ["folds"]:
            raise NeuroSQLError(f"'{kind}' data come with their own splits; --folds applies to folder, oasis, nifti, "
                                "dicom and npy data")
        raise NeuroSQLError(f"unknown option {unknown[0]!r} for '{kind}' data; accepted options: {accepted}")
    if "window" in options:
        options["window"] = check_window(options["window"])
    common = dict(resolution=resolution, channels=channels, limit=limit, seed=seed)
    if kind == "mnist5k":
        return load_mnist5k(split, **common)
    if kind == "mnist":
        return load_mnist(Path(path), split, **common)
    if kind == "npy":
        return load_npy(Path(path), split, **common, **options)
    if kind == "medmnist":
        return load_medmnist(Path(path), split, **common)
    if kind == "nifti":
        return load_nifti(Path(path), split, progress=progress, **common, **options)
    if kind == "dicom":
        return load_dicom(Path(path), split, progress=progress, **common, **options)
    return load_files(kind, Path(path), split, progress=progress, **common, **options)


def load_validation(spec: str | None, n_train: int, val_fraction: float, *, resolution: int, channels: int,
                    seed: int = 0, progress: bool = True, **options) -> ImageData | None:
    """Early-stopping images for a training set of ``n_train``: a seeded stratified
    round(val_fraction * n_train) of the data set's own val split, so that a
    ``limit`` counts training images only.

    ``resolution`` and ``channels`` are the training images' (val must match).
    None when the fraction gives no image, when the val split is empty (tiny
    data sets) or doubles as the test split (AFHQ): then the caller holds a
    fraction of the training images out instead, and no test image steers training.
    """
    n_val = round(val_fraction * n_train)
    if n_val == 0 or parse_spec(spec)[0] in VAL_SERVES_AS_TEST:
        return None
    try:
        return load_data(spec, "val", resolution=resolution, channels=channels, limit=n_val, seed=seed, progress=progress,
                         **options)
    except EmptySplitError:
        return None
