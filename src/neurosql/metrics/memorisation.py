"""Memorisation check: are generated images copies of training images?

A generator that copies its training set scores well on every distribution
metric, and synthetic medical data must not reproduce a patient. The check
compares how far samples lie from the training set with how far new real
images (held out, never trained on) lie from it, under the training cost ℓ
itself: samples that are no closer to the training images than new real
images are are not copies.

Blur lowers ℓ to every training image at once, so soft samples come closer
than real images without copying any one of them. The 2-NN form of the check
asks instead how much nearer each image lies to its nearest training image
than to the next one, which blur leaves about where it was: σ = 1.2 px of
blur moved it by at most 0.03 for held-out images of five small sets, where
the plain ratio fell to 0.77 (`python -m benchmarks.memorisation_blur`).
"""
from __future__ import annotations

import torch

from neurosql.core.losses import pairwise_cost
from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_images, check_same_image_shape


def nearest_two(images: torch.Tensor, train: torch.Tensor, loss: str = "ssim_l1") -> tuple[torch.Tensor, torch.Tensor]:
    """Distances ℓ of each image to its nearest and its second-nearest training image: (m,), (m,) float32.
    Needs at least two training images; cost as :func:`nearest_training`."""
    if len(train) < 2:
        raise NeuroSQLError(f"the memorisation check needs at least 2 training images, got {len(train)}")
    two = pairwise_cost(images, train, loss).topk(2, dim=1, largest=False).values.cpu()  # (m, 2), ascending
    return two[:, 0], two[:, 1]


def nearest_training(images: torch.Tensor, train: torch.Tensor, loss: str = "ssim_l1") -> tuple[torch.Tensor, torch.Tensor]:
    """Distance ℓ of each image to its nearest training image, and that image's index.

    Shapes: images (m, C, H, W), train (n, C, H, W) → (m,) float32, (m,) int64; volumes
    (m, C, D, H, W) under the 3-D ℓ likewise.
    Cost: one m × n cost matrix (:func:`neurosql.core.losses.pairwise_cost`).
    """
    distance, index = pairwise_cost(images, train, loss).min(dim=1)
    return distance.cpu(), index.cpu()


COPIES_BELOW = 0.8  # memorisation ratio under which samples are near-copies (tests: near-copies give < 0.2)
COPIES_BELOW_2NN = 0.9  # 2-NN ratio under which they are (held-out images, blurred or not: 0.98-1.03; training
                        # images blurred by σ = 1.2 px: 0.21-0.77; faces drawn with some soft copies among them: 0.87)
MUSH_ABOVE = 1.2  # ratio over which samples are farther from the data than new real images (random-colour
                  # shapes whose samples were colour mush: 1.27, while VGG precision read 0.96)


NOTE_MIN_HELD_OUT = 20  # below it a median over the held-out images is too noisy to warn on


def mush_fixes(sampler: str | None) -> str:
    """What to try when samples are not images of the data's kind, never naming the ``sampler`` in use. A
    lower d is no sure cure: on 200 brain slices d = 4 drew copies (memorisation 0.69), on 128 colour shapes
    faint reconstructions (fit SSIM 0.74), so the advice says what to check after it."""
    first = "--sampler codes, " if sampler == "prior" else ""
    return (f"{first}a longer budget or a lower --latent-dim (then check memorisation_ratio for copies and "
            "fit_ssim for poor reconstructions)")


def soft_not_copies(ratio: float, ratio_2nn: float | None) -> bool:
    """Whether samples come closer to the training images than new real images do only as blur brings them:
    no nearer their nearest training image than to the next one, as real images are (the 2-NN ratio)."""
    return ratio < COPIES_BELOW and ratio_2nn is not None and ratio_2nn >= COPIES_BELOW_2NN


def memorisation_note(ratio: float, copy_fraction: float, sampler: str | None = None,
                      ratio_2nn: float | None = None) -> str | None:
    """A warning when the memorisation check says the samples are not new images of the data's kind:
    near-copies of training images (by both ratios, when the 2-NN one is given), or farther from every
    training image than real images come.
    ``sampler``: NeuroSQL's --sampler ('codes' or 'prior'), so the advice names the other one and never
    the one in use; None (the baselines, which have no such option) names neither."""
    if ratio < COPIES_BELOW and not soft_not_copies(ratio, ratio_2nn):
        fixes = "--sampler prior or fewer epochs" if sampler == "codes" else "fewer epochs or more images"
        return (f"memorisation ratio {ratio:.2f} < {COPIES_BELOW}: samples are near-copies of training images "
                f"({copy_fraction:.0%} closer to one than any new real image); open nearest.png, and do not share "
                f"them as synthetic data; try {fixes}")
    if ratio > MUSH_ABOVE:
        return (f"memorisation ratio {ratio:.2f} > {MUSH_ABOVE}: samples lie farther from every training image "
                "than new real images do, so they are likely not images of the data's kind, whatever the "
                f"precision says; open samples.png beside reconstructions.png, and try {mush_fixes(sampler)}")
    return None


def memorisation(samples: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor,
                 loss: str = "ssim_l1", sampler: str | None = None) -> dict:
    """How close samples come to the training images, against held-out real images.

    With d(x) = min_i ℓ(x, train_i) and d₂(x) the second smallest ℓ(x, train_i):
        memorisation_ratio = median_s d(sample_s) / median_h d(held_out_h)
            (≈ 1 for a model that draws new images of the data's kind; → 0 for copies)
        memorisation_ratio_2nn = median_s (d / d₂)(sample_s) / median_h (d / d₂)(held_out_h)
            (the same, blind to blur; see the module docstring)
        copy_fraction = share of samples with d(sample) < min_h d(held_out_h)
            (samples closer to a training image than any new real image comes)
    Shapes: samples (m, C, H, W), train (n, C, H, W), held_out (k, C, H, W) in [0, 1], or all
    volumes (·, C, D, H, W) under the 3-D ℓ.
    Cost: (m + k) × n pairs of ℓ.
    """
    samples, train, held_out = (check_images(x, name, 1, dims=(4, 5)) for x, name in
                                ((samples, "samples"), (train, "train"), (held_out, "held_out")))
    check_same_image_shape(samples, train, "samples and train")
    check_same_image_shape(held_out, train, "held_out and train")
    d_fake, d2_fake = nearest_two(samples, train, loss)
    d_real, d2_real = nearest_two(held_out, train, loss)
    real_median = float(d_real.median())
    if real_median <= 0:
        raise NeuroSQLError("held-out images are copies of training images (distance 0): the memorisation check "
                            "needs a test split disjoint from the training images")
    ratio, copies = float(d_fake.median()) / real_median, float((d_fake < d_real.min()).float().mean())
    ratio_2nn = float((d_fake / d2_fake.clamp_min(1e-12)).median()) / float((d_real / d2_real.clamp_min(1e-12)).median())
    note = memorisation_note(ratio, copies, sampler, ratio_2nn) if len(held_out) >= NOTE_MIN_HELD_OUT else None
    return {
        "memorisation_ratio": ratio,
        "memorisation_ratio_2nn": ratio_2nn,
        "copy_fraction": copies,
        "memorisation_note": note,
        "nearest_train_samples": float(d_fake.median()),
        "nearest_train_held_out": real_median,
        "n_memorisation": (len(samples), len(train), len(held_out)),
    }


MEMORISATION_DEFINITIONS = {
    "memorisation_ratio": "median over samples of the training cost ℓ to the nearest training image, divided by the "
                          "same median for held-out real images (≈ 1: new images of the data's kind; well below 1, "
                          "e.g. < 0.8: samples are near-copies of training images; well above 1: samples lie farther "
                          "from the data than new real images do, e.g. mush). Blur brings soft samples closer to every "
                          "training image, so read it with memorisation_ratio_2nn",
    "memorisation_ratio_2nn": "median over samples of ℓ to the nearest training image divided by ℓ to the second "
                              "nearest, divided by the same median for held-out real images: the memorisation ratio "
                              f"blind to blur (≈ 1: new images, soft or sharp; below {COPIES_BELOW_2NN}: some samples "
                              "are nearer one training image than real images come, copies even when soft)",
    "copy_fraction": "share of samples closer (under ℓ) to a training image than any held-out real image is "
                     "(0 when no sample is a near-copy). Where held-out images all lie at about the same distance "
                     "from the training set (scenes of randomly placed objects) blends fall under the nearest one "
                     "too: on 240 cell fields it read 0.92 at a ratio of 0.86 while nearest.png showed fragmented "
                     "cells, none a copy; read it with the ratio and nearest.png",
    "nearest_train_samples": "median ℓ from a sample to its nearest training image",
    "nearest_train_held_out": "median ℓ from a held-out real image to its nearest training image",
    "n_memorisation": "samples, training images and held-out images behind the memorisation check",
    "memorisation_note": f"a warning when the memorisation ratio is below {COPIES_BELOW} and its 2-NN form below "
                         f"{COPIES_BELOW_2NN} (near-copies) or the memorisation ratio is above "
                         f"{MUSH_ABOVE} (samples unlike the data, which precision may not see), given at least "
                         f"{NOTE_MIN_HELD_OUT} held-out images; None otherwise",
}
