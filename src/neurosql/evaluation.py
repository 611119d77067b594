"""Evaluate a trained model against real data (paper §3.2, §3.4, App. E).

Works for any model with ``kind``, ``sample(m, seed)`` and ``reconstruct(X)``;
models with codes (``sample_latent(m, seed)``, ``decode(z)``, ``codes_`` in
``train_index_`` order, ``prior``) also get the downstream classifier, the
latent plot and interpolations. The metrics live in :mod:`neurosql.metrics`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .metrics import (
    METRIC_DEFINITIONS, colour_error, downstream_score, evaluate_images, knn_label, memorisation, nearest_training,
    quality_first, reconstruction_ssim,
)
from .metrics.volumes import VOLUME_DEFINITIONS, evaluate_volumes
from .persistence import write_json
from .report import plot_latents, save_grid, write_markdown_report
from .runs import picture_rows, reconstruction_pairs

EXTRA_DEFINITIONS = {
    "recon_ssim": "mean SSIM between held-out real images and their reconstructions G(encode(x)), "
    "codes from the nearest lattice point (no encoder), refined by gradient steps on z when refine_steps > 0",
    "n_recon": "held-out images behind recon_ssim",
    "recon_colour_error": "RGB only: mean |mean RGB colour difference| between the same images and their "
    "reconstructions, over a 4x4 grid of regions (lower is better)",
    "eval_seconds": "wall time of this evaluation",
}


LIGHT_VGG = 300  # images per set behind the light evaluation's VGG metrics (~70 ms each on one core)
GAP_IMAGES = 200  # samples and images at the training codes behind the sampling gap, however few are held out
MEMORISATION_SAMPLES = 500  # samples and held-out images behind the memorisation check
MEMORISATION_TRAIN = 5000  # training images searched for the nearest one (a seeded subset above that)


def training_images(model, real_train: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The images ``model`` was fitted on (``train_index_``), a seeded subset of MEMORISATION_TRAIN when more."""
    index = torch.as_tensor(model.train_index_)
    if len(index) > MEMORISATION_TRAIN:
        index = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))[:MEMORISATION_TRAIN]]
    return real_train[index]


def generated_labels(model, z: torch.Tensor, code_labels: np.ndarray, k: int = 5) -> np.ndarray:
    """Labels of images G(z): majority class of the k training codes nearest to z (see metrics.knn_label)."""
    return knn_label(z, model.codes_.cpu(), code_labels, k=k)


def evaluate_model(
    model,
    real_test: torch.Tensor,
    *,
    train_labels: np.ndarray | None = None,
    real_train: torch.Tensor | None = None,
    test_labels: np.ndarray | None = None,
    n: int = 2048,
    seed: int = 0,
    downstream: bool = False,
    n_synthetic: int = 10_000,
    classifier_epochs: int = 10,
    refine_steps: int = 0,
    light: bool = False,
) -> dict:
    """All metrics of one model; ``light`` skips the downstream classifier, and scores fewer images by
    VGG features (LIGHT_VGG) and nearest-real SSIM.

    real_test: held-out real images (n_test, C, H, W); real_train: the data set
    the model was fitted on (indexed by ``train_index_``), for the memorisation
    check and the downstream classifier; train_labels: its labels, needed to
    label generated images for the downstream classifier.
    """
    if real_test.ndim == 5:
        return evaluate_volume_model(model, real_test, real_train=real_train, n=n, seed=seed,
                                     refine_steps=refine_steps)
    start = time.perf_counter()
    fake = model.sample(min(n, max(len(real_test), GAP_IMAGES)), seed=seed)
    n_vgg = LIGHT_VGG if light else None
    m = min(len(real_test), len(fake), n, n_vgg or n)  # the real images behind the VGG metrics (matched_subsets)
    ceiling, fitted = at_the_codes(model, max(m, min(n, GAP_IMAGES)), seed, real_train)
    out = evaluate_images(real_test, fake, n=n, seed=seed, n_nearest=20 if light else 200,
                          kid_subsets=20 if light else 100, n_vgg=n_vgg, ceiling=ceiling, fitted=fitted,
                          sampler=sampler_of(model))
    if real_train is not None:
        out |= memorisation(fake[:MEMORISATION_SAMPLES], training_images(model, real_train, seed),
                            real_test[:MEMORISATION_SAMPLES], sampler=sampler_of(model))
    if model.supports_reconstruction:
        recon = model.reconstruct(real_test[: min(len(real_test), 500)], refine_steps=refine_steps)
        out["recon_ssim"] = reconstruction_ssim(real_test[: len(recon)], recon)
        out["n_recon"] = len(recon)
        if recon.shape[1] == 3:
            out["recon_colour_error"] = colour_error(real_test[: len(recon)], recon)
    else:  # e.g. the DDPM: no latent code to reconstruct from
        out["recon_ssim"] = None
    has_codes = model.has_codes
    if downstream and has_codes and not light and all(v is not None for v in (train_labels, real_train, test_labels)):
        z = model.sample_latent(n_synthetic, seed=seed + 1)
        code_labels = train_labels[model.train_index_]
        gen_labels = generated_labels(model, z, code_labels)
        gen_images = model.decode(z)
        out.update(
            downstream_score(
                gen_images, gen_labels, real_train, train_labels, real_test, test_labels,
                epochs=classifier_epochs, seed=seed,
            )
        )
    out["eval_seconds"] = time.perf_counter() - start
    return out


def at_the_codes(model, m: int, seed: int, real_train: torch.Tensor | None = None):
    """G at the codes of up to m training images (a seeded subset): the ceiling of its samples' VGG metrics
    (on 200 noisy synthetic brain slices, held-out slices blurred by σ = 0.5 px already score VGG precision
    and recall 0, and so did G's reconstructions) and what the sampling gap compares samples with; and,
    given the data set the model was fitted on (``real_train``, indexed by ``train_index_``), the training
    images of those codes in the same order, else None. (None, None) for a model that keeps no codes."""
    if not model.has_codes:
        return None, None
    codes = model.codes_
    index = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:m]
    fitted = None if real_train is None else real_train[torch.as_tensor(model.train_index_)[index]]
    return model.decode(codes[index.to(codes.device)]), fitted


def sampler_of(model) -> str | None:
    """The --sampler a model draws with (NeuroSQL's 'codes' or 'prior'), None for the baselines."""
    return getattr(model.config, "sampler", None)


def evaluate_volume_model(model, real_test: torch.Tensor, *, real_train: torch.Tensor | None = None, n: int = 2048,
                          seed: int = 0, refine_steps: int = 0) -> dict:
    """The 3-D metrics of a volume model (real_test: (n_test, C, D, H, W)): pfid_3d of samples against
    the held-out volumes and recon_ssim_3d of their reconstructions (see :mod:`neurosql.metrics.volumes`),
    and the memorisation check under the 3-D ℓ when ``real_train`` is given."""
    start = time.perf_counter()
    fake = model.sample(min(n, max(len(real_test), 2)), seed=seed)
    recon = model.reconstruct(real_test[: min(len(real_test), 500)], refine_steps=refine_steps)
    out = evaluate_volumes(real_test, fake, recon, n=n, seed=seed)
    if real_train is not None:
        out |= memorisation(fake[:MEMORISATION_SAMPLES], training_images(model, real_train, seed),
                            real_test[:MEMORISATION_SAMPLES], sampler=sampler_of(model))
    out["eval_seconds"] = time.perf_counter() - start
    return out


def write_evaluation(model, out: str | Path, metrics: dict, real_test: torch.Tensor, train_labels=None, seed: int = 0,
                     real_train: torch.Tensor | None = None) -> Path:
    """metrics.json, the pictures and report.md in ``out``; ``nearest.png`` when ``real_train`` (images) is given."""
    out, metrics = Path(out), quality_first(metrics)
    write_json(out / "metrics.json", metrics)
    samples = model.sample(64, seed=seed)
    save_grid(samples, out / "samples.png", nrow=8)
    images = [("Samples", "samples.png")]
    if real_train is not None:
        train = training_images(model, real_train, seed)
        _, index = nearest_training(samples[:32], train)
        save_grid(reconstruction_pairs(samples[:32], train[index]), out / "nearest.png", nrow=8)
        images.append(("Samples (odd rows) above their nearest training images under ℓ (even rows)", "nearest.png"))
    if model.supports_reconstruction:
        shown = real_test[picture_rows(len(real_test), seed=seed)]  # the test split may be sorted by class
        save_grid(reconstruction_pairs(shown, model.reconstruct(shown)), out / "reconstructions_test.png", nrow=8)
        images.append(("Held-out images (odd rows) and reconstructions (even rows)", "reconstructions_test.png"))
    if model.has_codes:
        code_labels = None if train_labels is None else train_labels[model.train_index_]
        plot_latents(model.codes_.cpu(), code_labels, model.prior, out / "latents.png")
        save_grid(interpolation_strip(model, code_labels), out / "interpolation.png", nrow=10)
        images += [("Training codes", "latents.png"), ("Interpolations between training codes", "interpolation.png")]
    definitions = {**METRIC_DEFINITIONS, **VOLUME_DEFINITIONS, **EXTRA_DEFINITIONS}
    write_markdown_report(
        out / "report.md",
        title=f"{model.kind} evaluation",
        images=images,
        metrics=metrics,
        definitions=definitions,
    )
    return out


def interpolation_strip(model, code_labels: np.ndarray | None, rows: int = 6, steps: int = 10) -> torch.Tensor:
    """Images along straight lines between pairs of training codes (of different classes when labelled)."""
    codes = model.codes_.cpu()
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(codes), generator=generator)
    if code_labels is None or len(np.unique(code_labels)) < 2:  # one class has no pairs across classes
        pairs = [(order[2 * r], order[2 * r + 1]) for r in range(min(rows, len(codes) // 2))]
    else:
        pairs, used = [], set()
        for i in order.tolist():
            for j in order.tolist():
                if code_labels[i] != code_labels[j] and (int(code_labels[i]), int(code_labels[j])) not in used:
                    pairs.append((i, j))
                    used.add((int(code_labels[i]), int(code_labels[j])))
                    break
            if len(pairs) == rows:
                break
    t = torch.linspace(0, 1, steps)[:, None]
    z = torch.cat([(1 - t) * codes[i] + t * codes[j] for i, j in pairs])  # (rows·steps, d)
    return model.decode(z)
