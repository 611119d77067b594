"""Write a small-data set's images as a folder of PNGs, to train on it as a user would.

    python -m benchmarks.write_set rgb-patches@64 /tmp/rgb64          # the training images
    python -m benchmarks.write_set rgb-patches@64 /tmp/rgb64 --test   # the held-out ones
    neurosql train --data folder:/tmp/rgb64 --resolution 64 --out runs/rgb64

The folder must not exist yet (nothing is overwritten). Sets: those of :mod:`benchmarks.small_data`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from .small_data import SETS


def write_set(name: str, folder: Path, test: bool = False) -> int:
    """The training (or held-out) images of set ``name`` as ``folder/00000.png``, ...; returns how many."""
    images = SETS[name]()[1 if test else 0].numpy()  # (n, C, H, W) in [0, 1]
    folder.mkdir(parents=True)
    for i, x in enumerate(images):
        pixels = (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)).save(folder / f"{i:05d}.png")
    return len(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=list(SETS))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--test", action="store_true", help="the held-out images instead of the training ones")
    args = parser.parse_args(argv)
    if args.folder.exists():
        parser.exit(2, f"error: {args.folder} exists; give a new folder\n")
    print(f"{write_set(args.set, args.folder, args.test)} images in {args.folder}")


if __name__ == "__main__":
    main()
