"""Does the memorisation check read soft new images as new and soft copies as copies?

Blurs held-out images (new images of the set) and training images (copies) by
σ pixels and scores each against the training set with the memorisation
check: the plain ratio (median ℓ to the nearest training image, ÷ that of the
held-out images) and its 2-NN form (median of nearest ÷ second-nearest ℓ, ÷
the same for the held-out images). New images should read about 1 at every
σ, copies well below. Takes about 20 s here.

    python -m benchmarks.memorisation_blur
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.small_data import SETS
from benchmarks.vgg_calibration import blurred
from neurosql.metrics import memorisation
from neurosql.persistence import write_text

HERE = Path(__file__).parent
BLUR_SETS = ("faces@32", "cells@64", "brain@64", "colour-shapes@32", "gray-patches@64")
SIGMAS = (0.0, 0.7, 1.2)  # pixels


def score(name: str) -> list[dict]:
    """Both ratios for the held-out and for as many training images, at each σ."""
    train, test = SETS[name]()
    rows = []
    for sigma in SIGMAS:
        for kind, images in (("held-out", test), ("training copies", train[:len(test)])):
            got = memorisation(blurred(images, sigma), train, test)
            rows.append({"set": name, "sigma": sigma, "images": kind, "memorisation_ratio": got["memorisation_ratio"],
                         "memorisation_ratio_2nn": got["memorisation_ratio_2nn"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(BLUR_SETS))
    parser.add_argument("--out", default=str(HERE / "memorisation_blur"), help="stem of the .json and .md written")
    args = parser.parse_args(argv)
    rows = [row for name in args.sets.split(",") for row in score(name)]
    lines = ["| set | σ px | images | memorisation ratio | 2-NN ratio |", "|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['sigma']} | {r['images']} | {r['memorisation_ratio']:.2f} | "
              f"{r['memorisation_ratio_2nn']:.2f} |" for r in rows]
    write_text(Path(args.out + ".json"), json.dumps(rows, indent=1) + "\n")
    write_text(Path(args.out + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
