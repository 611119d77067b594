"""The files of a folder that a user means as data: hidden files and everything inside hidden
folders (``.thumbnails/``, ``.ipynb_checkpoints/``, dotfiles) or macOS archive debris (``__MACOSX/``)
are never images, classes or volumes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

NOT_DATA = ("__MACOSX",)  # folders that zip tools add beside the data; names starting with '.' are hidden too


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name in NOT_DATA


def visible_files(folder: Path) -> Iterator[Path]:
    """Every visible file below ``folder``, hidden folders pruned rather than walked (unsorted)."""
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        yield from (Path(top) / name for name in files if not is_hidden(name))
