"""The one reader of NumPy files a user hands us (.npy arrays, .npz archives, MedMNIST files).

Every read goes through :func:`reading`, which never unpickles (``allow_pickle=False``) and turns
what NumPy and ``zipfile`` raise for a truncated, CRC-damaged, empty, renamed or pickled file into
one NeuroSQLError naming the file and the fix.
"""

from __future__ import annotations

import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import NeuroSQLError

UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)


def _why(err: BaseException) -> str:
    """What is wrong with the file, in words, from what the reader raised."""
    text = str(err)
    if "Object arrays" in text or "Python objects" in text:
        return "it holds pickled Python objects, which are never loaded"
    if "pickled data" in text:
        return "it is not a NumPy file"
    if isinstance(err, EOFError) or "No data left" in text:
        return "it is empty or truncated"
    if isinstance(err, (zipfile.BadZipFile, zlib.error)):
        return f"the archive is damaged: {text.splitlines()[0] if text else type(err).__name__}"
    return text.strip().splitlines()[0][:120] if text.strip() else type(err).__name__


@contextmanager
def reading(path: Path, fix: str):
    """Within the block, any error of reading ``path`` becomes ``cannot read PATH (why); fix``."""
    try:
        yield
    except UNREADABLE as err:
        raise NeuroSQLError(f"cannot read {path} ({_why(err)}); {fix}") from None


def load_array(path: Path, fix: str) -> np.ndarray:
    """A .npy array, memory-mapped (only the rows used are read later)."""
    with reading(path, fix):
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise NeuroSQLError(f"{path} is an .npz archive, not a .npy array; rename it {path.with_suffix('.npz').name}")
    return array


class Archive:
    """An .npz archive open for reading; every member is read through :func:`reading`."""

    def __init__(self, path: Path, fix: str):
        self.path, self.fix = path, fix
        with reading(path, fix):
            self._npz = np.load(path, allow_pickle=False)
        if not isinstance(self._npz, np.lib.npyio.NpzFile):  # a .npy array under a .npz name
            raise NeuroSQLError(f"{path} is a single .npy array, not an .npz archive; rename it {path.with_suffix('.npy').name}")

    @property
    def files(self) -> list[str]:
        return self._npz.files

    def __getitem__(self, key: str) -> np.ndarray:
        with reading(self.path, self.fix):
            return self._npz[key]

    def close(self) -> None:
        self._npz.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
