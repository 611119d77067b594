"""What the VGG-feature metrics give real images: each small-data set's training images, as they are
and blurred by a Gaussian of σ = 0.5 and 1 px, scored against its held-out images as samples would be.

Real images as they are show what a perfect generator scores on a set of this size; the barely
softer copies show how much of a sample's score is sub-pixel sharpness. On the noisy synthetic
sets a 0.5-px blur, hard to see by eye, takes VGG precision and recall from about 0.9 to 0,
so there those two numbers cannot tell good samples from bad ones, and the FD, the 1-NN test
beside its ceiling (G at the training codes, in every run's metrics) and the pictures must.

    python -m benchmarks.vgg_calibration --sets brain@64,cells@64 --out benchmarks/vgg_calibration
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from scipy.ndimage import gaussian_filter

from neurosql.metrics import VGGFeatureNet, extract_features, fid_from_features, load_stlpips, nn1_test, prdc
from neurosql.persistence import write_json, write_text

from .small_data import SETS

DEFAULT_SETS = ("faces@32", "gray-patches@64", "rgb-patches@32", "brain@64", "cells@64", "phantom-slices@64")
BLURS = (0.0, 0.5, 1.0)  # σ in pixels of the Gaussian applied to the real images


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (m, C, H, W) under a Gaussian of σ pixels over height and width; as they are at σ = 0."""
    return images if sigma == 0 else torch.from_numpy(gaussian_filter(images.numpy(), (0, 0, sigma, sigma)))


def calibrate(name: str, net) -> list[dict]:
    """One row per blur: the set's training images (as many as it holds out) against its held-out ones."""
    train, test = SETS[name]()
    m = min(len(train), len(test))
    f_test = extract_features(net, test[:m])
    rows = []
    for sigma in BLURS:
        f = extract_features(net, blurred(train[:m], sigma).float())
        pr = prdc(f_test, f)
        rows.append({"set": name, "n": m, "blur_px": sigma, "fd_vgg": fid_from_features(f_test, f),
                     "nn1_accuracy_vgg": nn1_test(f_test, f)["nn1_accuracy"],
                     "precision_vgg": pr["precision"], "recall_vgg": pr["recall"]})
        print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| set | images per side | real images blurred by | VGG-FD ↓ | 1-NN → 0.5 | VGG precision ↑ | VGG recall ↑ |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        blur = "none" if r["blur_px"] == 0 else f"σ = {r['blur_px']:g} px"
        lines.append(f"| {r['set']} | {r['n']} | {blur} | {r['fd_vgg']:.3f} | {r['nn1_accuracy_vgg']:.2f} | "
                     f"{r['precision_vgg']:.2f} | {r['recall_vgg']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated sets of benchmarks.small_data")
    parser.add_argument("--out", type=Path, default=Path("runs/vgg_calibration"),
                        help="writes OUT.json and OUT.md (default: runs/vgg_calibration)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    names = args.sets.split(",")
    unknown = [s for s in names if s not in SETS]
    if unknown:
        parser.exit(2, f"error: unknown set {unknown[0]}; choose from {', '.join(SETS)}\n")
    torch.set_num_threads(args.threads)
    net = VGGFeatureNet(load_stlpips())
    rows = [row for name in names for row in calibrate(name, net)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), rows)
    write_text(args.out.with_suffix(".md"), table(rows))


if __name__ == "__main__":
    main()
