"""The sampling gap: are samples as good as the generator's reconstructions?

Users judge samples beside reconstructions. Metrics against real images miss
what they see on small sets: with a few dozen held-out images, and VGG
features averaged over positions, colour clouds drawn between training codes
read as well as G's blurred reconstructions (288 RGB photo patches: VGG
precision 1.00, 1-NN accuracy 0.83 for the samples against 0.90 for the
reconstructions). Both checks here compare the samples with G at its training
codes instead: as many images as there are codes, G's own blur on both sides,
so what remains is what sampling between the codes loses.

- ``sharpness_ratio``: blends of training images have soft edges, so the
  median edge steepness of samples falls below that of G at the codes.
- ``fit_ssim``: both checks are relative, so a generator that reproduces its
  training images poorly reads close to its samples; SSIM of G at the codes
  against the training images they stand for says when it does (128 colour
  shapes at d = 4, or with code noise 1: faint squares, SSIM 0.63-0.74 and a
  silent gap, against 0.82-1.00 for the defaults on twelve sets).
- ``gap_nn1_vgg``: the 1-NN two-sample test between the two sets on the
  first two VGG layers (0.5: samples are not told apart from
  reconstructions); local texture sees fragmented strokes, ragged outlines
  and speckle whose edges stay steep, which the deeper layers, averaged over
  positions, let pass (300 MNIST digits at 64 px, half of the samples
  broken: 0.77-0.80 on the first two layers, 0.67 on all five).
"""
from __future__ import annotations

import numpy as np
import torch

from neurosql.metrics._validate import check_images, check_same_image_shape
from neurosql.metrics.lpips import LPIPS_CHANNELS
from neurosql.metrics.memorisation import mush_fixes
from neurosql.metrics.ssim_stats import reconstruction_ssim
from neurosql.metrics.two_sample import nn1_test

LOCAL_TEXTURE = sum(LPIPS_CHANNELS[:2])  # VGGFeatureNet's first columns: relu1_2 and relu2_2
STEEP_QUANTILE = 0.99  # the steepest 1 % of steps stand for an image's edges
RANGE_QUANTILES = (0.01, 0.99)  # the image's intensity range, robust to a few hot pixels
MIN_RANGE = 1 / 255  # a flat image's range, so that its steepness is 0 and not 0 / 0

# Calibrated on defaults-trained runs whose grids were opened (one training seed, three sampling seeds each):
BLURRED_BELOW = 0.85  # sharpness ratio of blurred blends (colour shapes 0.56-0.58, faces 0.73-0.75, RGB photo
# patches 0.75-0.78) against 0.86-0.99 elsewhere (MNIST and sklearn digits 0.95-0.99, samples that pass)
TOLD_APART = 0.7  # gap 1-NN accuracy between MNIST and sklearn digits, whose samples pass beside their
# reconstructions (0.56-0.63), and samples visibly worse: broken strokes of 300 MNIST digits at 64 px 0.77-0.80,
# ragged phantom slices 0.80-0.85, faces 0.84-0.88, RGB patches at 64 px 0.87-0.90, brain slices 0.93-0.95,
# grey photo patches 0.93, cell fields 0.98; fundus patches with ragged masks 0.67-0.74
POOR_FIT = 0.8  # fit SSIM below which G's reconstructions are too poor to judge samples by: faint, blurred
# colour shapes at d = 4 or code noise 1 read 0.63-0.74; defaults on twelve sets 0.82 (RGB photo patches at
# 64 px), 0.84 (cells, grey photo patches) to 1.00 (faces)


def edge_steepness(images: torch.Tensor) -> torch.Tensor:
    """How steep each image's edges are, relative to its contrast.

    s(x) = q_0.99(|Δx|) / (q_0.99(x) - q_0.01(x)), with Δx the differences of
    neighbouring pixels (voxels) along every spatial axis of the channel mean,
    and q a quantile over the image. A sharp step between two regions gives
    about 1; the same step blurred over k pixels about 1/k. Scale- and
    offset-free, so a dark sample is not called blurred.
    Shapes: (n, C, H, W) or (n, C, D, H, W) → (n,). Cost O(n · pixels).
    """
    x = images.detach().cpu().float().mean(dim=1, keepdim=True)  # luminance-like: edges between colours of equal
    # brightness are rare in data, and pooling the channels read colour swirls in mush as steep (RGB patches 0.81)
    steps = torch.cat([x.diff(dim=axis).abs().flatten(1) for axis in range(2, x.ndim)], dim=1)  # (n, steps)
    low, high = np.quantile(x.flatten(1).numpy(), RANGE_QUANTILES, axis=1)  # (n,) each
    steep = np.quantile(steps.numpy(), STEEP_QUANTILE, axis=1)  # numpy: torch.quantile caps its input at 2^24
    return torch.from_numpy(steep / np.maximum(high - low, MIN_RANGE))


def sharpness_ratio(samples: torch.Tensor, ceiling: torch.Tensor) -> float:
    """Median edge steepness of ``samples`` over that of ``ceiling`` (G at its training codes): about 1 when
    samples keep the reconstructions' edges, below BLURRED_BELOW for blurred blends of training images."""
    return float(edge_steepness(samples).median() / edge_steepness(ceiling).median().clamp_min(1e-12))


def gap_note(sharpness: float, nn1: float | None, sampler: str | None = None,
             fit: float | None = None) -> str | None:
    """A warning when samples are worse than reconstructions by either check, or when the reconstructions
    themselves are too poor (``fit``, SSIM against their training images) for the checks to mean much;
    None otherwise (``sampler`` as in :func:`~neurosql.metrics.memorisation.memorisation_note`)."""
    if fit is not None and fit < POOR_FIT:
        return (f"the generator's reconstructions of its training images are poor (SSIM {fit:.2f} < {POOR_FIT}), "
                "so its samples cannot be judged beside them, and the sampling gap reads small whatever the samples "
                "are; open reconstructions.png, and try a higher --latent-dim, less --code-noise or a longer budget")
    seen = []
    if sharpness < BLURRED_BELOW:
        seen.append(f"their edges are softer (sharpness ratio {sharpness:.2f} < {BLURRED_BELOW})")
    if nn1 is not None and nn1 >= TOLD_APART:
        seen.append(f"VGG features tell them apart (1-NN {nn1:.2f} >= {TOLD_APART})")
    if not seen:
        return None
    return (f"samples are worse than the generator's reconstructions of its training images: {' and '.join(seen)}, "
            f"whatever the metrics against real images say; open samples.png beside reconstructions.png, and try "
            f"{mush_fixes(sampler)}")


def sampling_gap(samples: torch.Tensor, ceiling: torch.Tensor, f_samples=None, f_ceiling=None,
                 sampler: str | None = None, fitted: torch.Tensor | None = None) -> dict:
    """Both checks of samples against ``ceiling``, G at its training codes.

    samples (m, C, H, W) and ceiling (k, C, H, W) in [0, 1] (or volumes); f_samples (m, 1472) and f_ceiling
    (k, 1472): their ``VGGFeatureNet`` features, when available, for the 1-NN test on the first two layers.
    fitted (k, C, H, W): the training images of the ceiling's codes, in its order, for ``fit_ssim``.
    Returns ``sharpness_ratio``, ``gap_nn1_vgg`` (None without features), ``fit_ssim`` (None without
    ``fitted``), ``n_gap`` (samples, ceiling images) and ``gap_note``.
    """
    samples, ceiling = check_images(samples, "samples", 2, (4, 5)), check_images(ceiling, "ceiling", 2, (4, 5))
    check_same_image_shape(samples, ceiling, "samples and ceiling")
    sharpness = sharpness_ratio(samples, ceiling)
    texture = slice(0, LOCAL_TEXTURE)
    nn1 = None if f_samples is None else nn1_test(f_ceiling[:, texture], f_samples[:, texture])["nn1_accuracy"]
    fit = None if fitted is None else reconstruction_ssim(fitted, ceiling)
    return {"gap_nn1_vgg": nn1, "sharpness_ratio": sharpness, "fit_ssim": fit, "n_gap": (len(samples), len(ceiling)),
            "gap_note": gap_note(sharpness, nn1, sampler, fit)}


GAP_DEFINITIONS = {
    "gap_nn1_vgg": "1-NN accuracy between samples and the generator at its training codes (the reconstructions "
                   "of its training images) on the first two VGG layers, local texture: 0.5 when samples are not "
                   "told apart from reconstructions, near 1 when they are (broken strokes, ragged outlines, speckle, "
                   f"mush; a warning from {TOLD_APART}); the evaluation scores at least 200 of each (all codes when "
                   "fewer), however few images are held out",
    "sharpness_ratio": "median edge steepness of samples over that of the same reconstructions (steepness: the "
                       "99th percentile of neighbouring-pixel steps of the channel mean over the image's 1-99 % "
                       f"intensity range): about 1 when samples keep the reconstructions' edges, below {BLURRED_BELOW} "
                       "for blurred blends of training images (colour clouds), which VGG features averaged over "
                       "positions miss",
    "fit_ssim": "mean SSIM of the same reconstructions against the training images they reconstruct: both checks "
                "above are relative to them, so below "
                f"{POOR_FIT} (faint or blurred reconstructions) the gap reads small whatever the samples are, and "
                "gap_note says so; None without the training images",
    "n_gap": "samples and reconstructions behind gap_nn1_vgg, sharpness_ratio and fit_ssim",
    "gap_note": "a warning when either check finds samples worse than the reconstructions, or fit_ssim finds the "
                "reconstructions too poor to judge them by; None otherwise",
}
