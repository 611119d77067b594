"""Layouts made of image files: a plain folder, CelebA, AFHQ and OASIS (Kaggle).

Each layout is read into a catalog (paths, labels, split of each file) from names
alone; only the files of the requested split, after ``limit``, are decoded.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NeuroSQLError
from .container import ImageData
from .preprocess import decode_files, is_image_file, probe_files
from .splits import seeded_split, select
from .visible import is_hidden, visible_files

DEFAULT_RESOLUTION = {"celeba": 64, "afhq": 128, "oasis": 128}  # the paper's sizes (Table 1, App. C)
DEFAULT_CHANNELS = {"celeba": 3, "afhq": 3, "oasis": 1}
CELEBA_SPLITS = {0: "train", 1: "val", 2: "test"}  # list_eval_partition.txt codes
VAL_SERVES_AS_TEST = ("afhq",)  # layouts without a test split: their val split is the test set
OASIS_CLASSES = ("Non Demented", "Very mild Dementia", "Mild Dementia", "Moderate Dementia")
# class folder name (case-folded) -> label: Kaggle's spelling, and the paper's (§4: "Very Mild Demented", …)
OASIS_FOLDERS = {**{name.casefold(): i for i, name in enumerate(OASIS_CLASSES)},
                 "very mild demented": 1, "mild demented": 2, "moderate demented": 3}
OASIS_SUBJECT = re.compile(r"OAS1_\d{4}")


@dataclass
class Catalog:
    root: Path  # ids are paths relative to it
    paths: list[Path]  # (n,) image files, sorted
    labels: np.ndarray | None  # (n,) int64 class index
    class_names: list[str] | None
    split_of_item: np.ndarray  # (n,) "train" | "val" | "test"


def require_dir(path: Path, kind: str) -> list[Path]:
    """The visible entries of a folder, or an error naming what is wrong."""
    if not path.is_dir():
        raise NeuroSQLError(f"'{kind}' data needs a folder, but {path} is a file; pass the folder that holds the data")
    entries = sorted(p for p in path.iterdir() if not is_hidden(p.name))
    if not entries:
        raise NeuroSQLError(f"folder {path} is empty; put the images in it or pass another folder")
    return entries


def image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, hidden files and folders skipped), sorted."""
    return sorted(p for p in visible_files(folder) if is_image_file(p))


def no_images(folder: Path) -> NeuroSQLError:
    return NeuroSQLError(f"no PNG/JPEG/BMP/TIFF images found in {folder}; check the path or give the layout as KIND:PATH")


def folder_catalog(root: Path, folds=None) -> Catalog:
    """Images anywhere below ``root``; when every image sits inside a top-level
    sub-folder, those sub-folders (sorted) are the classes, otherwise no labels."""
    require_dir(root, "folder")
    paths = image_files(root)
    if not paths:
        raise no_images(root)
    tops = [p.relative_to(root).parts for p in paths]
    labels = class_names = None
    if all(len(parts) > 1 for parts in tops):
        class_names = sorted({parts[0] for parts in tops})
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[parts[0]] for parts in tops], dtype=np.int64)
    return Catalog(root, paths, labels, class_names,
                   seeded_split(len(paths) if labels is None else labels, folds=folds))


def _celeba_partition(root: Path) -> dict[str, str]:
    """file name -> split, from list_eval_partition.txt ("000001.jpg 0") or Kaggle's .csv."""
    found = [root / name for name in ("list_eval_partition.txt", "list_eval_partition.csv") if (root / name).is_file()]
    if not found:
        raise NeuroSQLError(
            f"CelebA partition file {root / 'list_eval_partition.txt'} not found; add it next to img_align_celeba/ "
            f"or load the images without official splits as 'folder:{root / 'img_align_celeba'}'"
        )
    split_of = {}
    for number, line in enumerate(found[0].read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields or (number == 1 and not fields[-1].isdigit()):
            continue  # blank line or the csv header
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise NeuroSQLError(
                f"{found[0]} line {number} is not '<file> <0|1|2>': {line!r}; repair or replace the file"
            )
        split_of[fields[0]] = CELEBA_SPLITS[int(fields[1])]
    return split_of


def celeba_catalog(root: Path) -> Catalog:
    """img_align_celeba/*.jpg with the official train/val/test partition; no labels."""
    require_dir(root, "celeba")
    folder = root / "img_align_celeba"
    if (folder / "img_align_celeba").is_dir():
        folder = folder / "img_align_celeba"  # the Kaggle archive nests the folder once more
    if not folder.is_dir():
        raise NeuroSQLError(f"CelebA folder {folder} not found; pass the folder that contains img_align_celeba/")
    split_of = _celeba_partition(root)
    paths = [p for p in image_files(folder) if p.name in split_of]
    if not paths:
        raise no_images(folder)
    if len(paths) < len(split_of):
        missing = len(split_of) - len(paths)
        warnings.warn(f"{missing} CelebA files listed in the partition file are missing", stacklevel=3)
    return Catalog(folder, paths, None, None, np.array([split_of[p.name] for p in paths], dtype=object))


def afhq_catalog(root: Path) -> Catalog:
    """train/{cat,dog,wild}/* and val/{cat,dog,wild}/*; the class is the sub-folder."""
    require_dir(root, "afhq")
    parts = {split: root / split for split in ("train", "val") if (root / split).is_dir()}
    if "train" not in parts:
        raise NeuroSQLError(f"AFHQ folder {root} has no train/ sub-folder; pass the folder that holds train/ and val/")
    found = [(split, p) for split, folder in parts.items() for p in image_files(folder)]
    if not found:
        raise no_images(root)
    class_of = [p.relative_to(root / split).parts[0] for split, p in found]
    class_names = sorted(set(class_of))
    index = {name: i for i, name in enumerate(class_names)}
    return Catalog(
        root,
        [p for _, p in found],
        np.array([index[c] for c in class_of], dtype=np.int64),
        class_names,
        np.array([split for split, _ in found], dtype=object),
    )


def oasis_catalog(root: Path, folds=None) -> Catalog:
    """The four OASIS class folders; split 80/10/10 by subject (OAS1_dddd in the name).

    A file without a subject id is an error rather than skipped: the subject-wise
    split is what keeps slices of one brain out of two splits.
    """
    index = OASIS_FOLDERS
    folders = [p for p in require_dir(root, "oasis") if p.is_dir()]
    strange = [p.name for p in folders if p.name.casefold() not in index]
    if strange or not folders:
        raise NeuroSQLError(
            f"OASIS folder {root} must hold only the class folders {', '.join(OASIS_CLASSES)}; "
            f"found {strange[0] if strange else 'none of them'}"
        )
    paths, labels, subjects = [], [], []
    for folder in folders:
        for p in image_files(folder):
            match = OASIS_SUBJECT.search(p.name)
            if match is None:
                raise NeuroSQLError(
                    f"OASIS file {p} has no subject id like OAS1_0001 in its name; rename or remove it"
                )
            paths.append(p)
            labels.append(index[folder.name.casefold()])
            subjects.append(match.group())
    if not paths:
        raise no_images(root)
    labels = np.array(labels, dtype=np.int64)
    return Catalog(root, paths, labels, list(OASIS_CLASSES), seeded_split(labels, groups=subjects, folds=folds))


CATALOGS = {"folder": folder_catalog, "celeba": celeba_catalog, "afhq": afhq_catalog, "oasis": oasis_catalog}


def load_files(kind: str, root: Path, split: str, *, resolution, channels, limit, seed, progress, folds=None,
               window=None, pad_square: bool = False) -> ImageData:
    """Catalog the layout, pick the split and ``limit``, then decode only those files; ``window``
    and ``pad_square``: see :func:`neurosql.data.preprocess.decode_image`."""
    catalog = CATALOGS[kind](root, folds) if folds is not None else CATALOGS[kind](root)
    if kind in VAL_SERVES_AS_TEST and split == "test":
        warnings.warn("AFHQ has no test split; its val/ folder serves as the test set", stacklevel=3)
        split = "val"
    idx = select(catalog.split_of_item, split, catalog.labels, limit, seed)
    paths = [catalog.paths[i] for i in idx]
    resolution = resolution or DEFAULT_RESOLUTION.get(kind)
    channels = channels or DEFAULT_CHANNELS.get(kind)
    if resolution is None or channels is None:  # plain folders: from the headers of the chosen files
        side, majority = probe_files(paths, progress, pad_square)
        resolution, channels = resolution or side, channels or majority
    images, kept = decode_files(paths, resolution, channels, progress, window, pad_square)  # (m, C, r, r)
    idx = idx[kept]
    return ImageData(
        images=images,
        labels=None if catalog.labels is None else catalog.labels[idx],
        class_names=catalog.class_names,
        ids=[catalog.paths[i].relative_to(catalog.root).as_posix() for i in idx],
        source=f"{kind}:{root}",
    )
