"""The in-memory dataset every source produces, and validation of user arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import NeuroSQLError


@dataclass
class ImageData:
    """Images in [0, 1] with the labels and ids the source layout provides."""

    images: torch.Tensor  # (n, C, H, W), or volumes (n, C, D, H, W), float32 in [0, 1]
    labels: np.ndarray | None  # (n,) int64 class index, or None
    class_names: list[str] | None  # name of each label index
    ids: list[str] | None  # per-image id: relative file path, "file:vol:slice", array index
    source: str  # the resolved spec, e.g. "folder:/data/x"

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
        )


def check_images(x, *, min_count: int = 2) -> torch.Tensor:
    """Validate user images and return them as a float32 tensor (n, C, H, W) in [0, 1].

    Accepts a numpy array or torch tensor (kept on its device), 4-D (n, C, H, W)
    or 3-D (n, H, W), which becomes (n, 1, H, W), or volumes (n, C, D, H, W);
    uint8 is divided by 255, floats must already lie in [0, 1]. ``min_count`` is
    the fewest images accepted.
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise NeuroSQLError(f"images must be a numeric array or tensor ({err})") from None
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (n, H, W) -> (n, 1, H, W)
    if x.ndim not in (4, 5):
        raise NeuroSQLError(
            f"images must be 4-D (n, C, H, W), 3-D (n, H, W) or volumes (n, C, D, H, W), got shape {tuple(x.shape)}"
        )
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        raise NeuroSQLError(
            f"images of shape {tuple(x.shape)} look channels-last; "
            "reorder them to (n, C, H, W) or (n, C, D, H, W), e.g. x.permute(0, 3, 1, 2)"
        )
    if len(x) < min_count:
        raise NeuroSQLError(f"need at least {min_count} images, got {len(x)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise NeuroSQLError(
            f"images must be uint8 or float in [0, 1], got {x.dtype}; convert them, e.g. x.astype('uint8')"
        )
    if not bool(torch.isfinite(x).all()):
        raise NeuroSQLError("images contain NaN or Inf; remove or repair those images")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise NeuroSQLError(
            f"image values lie in [{lo:g}, {hi:g}], outside [0, 1]; "
            "scale your data to [0, 1], e.g. divide uint8 images by 255"
        )
    return x.float()


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
    """Validate an on-disk array like :func:`check_images`, streaming it in chunks."""
    shape = tuple(array.shape)
    if len(shape) not in (3, 4):
        raise NeuroSQLError(f"images must be 4-D (n, C, H, W) or 3-D (n, H, W), got shape {shape}")
    if len(shape) == 4 and shape[1] not in (1, 3):
        raise NeuroSQLError(f"images of shape {shape} need 1 or 3 channels in axis 1, (n, C, H, W)")
    if shape[0] < min_count:
        raise NeuroSQLError(f"need at least {min_count} images, got {shape[0]}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise NeuroSQLError(f"images must be uint8 or float in [0, 1], got {array.dtype}")
        for start in range(0, shape[0], chunk):
            part = np.asarray(array[start : start + chunk])
            if not np.isfinite(part).all():
                raise NeuroSQLError("images contain NaN or Inf; remove or repair those images")
            if part.min() < 0 or part.max() > 1:
                raise NeuroSQLError("image values lie outside [0, 1]; scale your data to [0, 1]")
    return LazyImages(array)


def take(images, idx):
    """Rows ``idx`` of a tensor, or a lazy view of them for :class:`LazyImages`."""
    return images.subset(idx) if isinstance(images, LazyImages) else images[torch.as_tensor(idx)]
