"""The in-memory dataset every source produces, and validation of user arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core import images as core_images
from ..errors import NeuroSQLError


@dataclass
class ImageData:
    """Images in [0, 1] with the labels and ids the source layout provides."""

    images: torch.Tensor  # (n, C, H, W), or volumes (n, C, D, H, W), float32 in [0, 1]
    labels: np.ndarray | None  # (n,) int64 class index, or None
    class_names: list[str] | None  # name of each label index
    ids: list[str] | None  # per-image id: relative file path, "file:vol:slice", array index
    source: str  # the resolved spec, e.g. "folder:/data/x"
    affine: np.ndarray | None = None  # (4, 4) voxel → world (RAS+ mm) of volumes read from NIfTI files

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.labels is not None and len(self.labels) != n:
            raise NeuroSQLError(f"{len(self.labels)} labels for {n} images")
        if self.ids is not None and len(self.ids) != n:
            raise NeuroSQLError(f"{len(self.ids)} ids for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def label_names(self) -> np.ndarray | None:
        """Each image's class name (its index when classes are unnamed); None when unlabelled."""
        if self.labels is None or self.class_names is None:
            return self.labels
        return np.asarray(self.class_names)[self.labels]

    def subset(self, idx) -> ImageData:
        """The images at integer indices (or a boolean mask) ``idx``, same order."""
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        return ImageData(
            images=self.images[torch.as_tensor(idx, device=self.images.device)],
            labels=None if self.labels is None else self.labels[idx],
            class_names=self.class_names,
            ids=None if self.ids is None else [self.ids[i] for i in idx],
            source=self.source,
            affine=self.affine,
        )


def check_images(x, *, min_count: int = 2) -> torch.Tensor:
    """Validate user images and return them as a float32 tensor (n, C, H, W) in [0, 1].

    Accepts a numpy array or torch tensor (kept on its device), 4-D (n, C, H, W)
    or 3-D (n, H, W), which becomes (n, 1, H, W), or volumes (n, C, D, H, W);
    uint8 is divided by 255, floats must already lie in [0, 1]. ``min_count`` is
    the fewest images accepted.
    """
    return core_images.check_images(x, name="images", dims=(4, 5), min_count=min_count, add_channel=True, convert=True)


class LazyImages:
    """Images read on demand from an array on disk, e.g. ``np.load(path, mmap_mode="r")``.

    Indexing with a batch of indices reads, converts and returns only those
    rows as a float32 tensor (b, C, H, W) in [0, 1], so memory is bounded by
    the batch rather than by n (Algorithm 2 on archives larger than RAM).
    """

    def __init__(self, array, index: np.ndarray | None = None, device: torch.device | str = "cpu"):
        self.array = array
        self.index = np.arange(len(array)) if index is None else np.asarray(index, dtype=np.int64)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        image = self.array.shape[1:]
        return (len(self), *((1, *image) if len(image) == 2 else image))

    def __getitem__(self, idx) -> torch.Tensor:
        rows = self.index[np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx)]
        order = np.argsort(rows)  # sequential reads are what a memory map serves fastest
        block = np.empty((len(rows), *self.array.shape[1:]), dtype=self.array.dtype)
        block[order] = self.array[rows[order]]
        return _to_unit_float(torch.from_numpy(block)).reshape(len(rows), *self.shape[1:]).to(self.device)

    def subset(self, idx) -> "LazyImages":
        return LazyImages(self.array, self.index[np.asarray(idx)], self.device)

    def to(self, device) -> "LazyImages":
        return LazyImages(self.array, self.index, device)


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def check_lazy_images(array, *, min_count: int = 2, chunk: int = 4096) -> LazyImages:
    """Validate an on-disk array like :func:`check_images`, 4-D or 3-D only, streaming it in chunks."""
    shape = tuple(array.shape)
    if len(shape) == 3:
        shape = (shape[0], 1, *shape[1:])  # (n, H, W) -> (n, 1, H, W), as LazyImages reads it
    core_images.check_shape(shape, name="images", dims=(4,), min_count=min_count, add_channel=True)
    if core_images.check_dtype(array.dtype, name="images", convert=True) == "float":
        parts = (torch.from_numpy(np.array(array[start : start + chunk])) for start in range(0, shape[0], chunk))
        core_images.check_values(parts, name="images")
    return LazyImages(array)


def take(images, idx):
    """Rows ``idx`` of a tensor, or a lazy view of them for :class:`LazyImages`."""
    return images.subset(idx) if isinstance(images, LazyImages) else images[torch.as_tensor(idx)]
