"""Evaluation of generated images against real ones (paper §3.2, §3.4, App. E).

The package knows nothing about training: it takes real and generated image
tensors (n, C, H, W) in [0, 1] (plus labels or codes where needed) and
returns plain dicts of numbers. ``evaluate_images`` runs the standard set;
``METRIC_DEFINITIONS`` gives a one-line meaning for every key it (and
``downstream_score``) returns, for reports.
"""
import torch
from torch import nn

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_images, check_same_image_shape
from neurosql.metrics.colour import colour_error, colour_fd, colour_metrics
from neurosql.metrics.classifier import (
    DomainFeatureNet, SmallCNN, domain_feature_net, downstream_score, evaluate_classifier,
    macro_precision_recall, train_classifier,
)
from neurosql.metrics.antialiased_vgg import AntialiasedVGG16, stlpips_available
from neurosql.metrics.features import ProxyFeatureNet, VGGFeatureNet, extract_features, matched_subsets, seeded_order
from neurosql.metrics.fid import fid_from_features, frechet_distance, proxy_fid
from neurosql.metrics.kid import kid, mmd2_unbiased
from neurosql.metrics.latent_labels import knn_label
from neurosql.metrics.lpips import (
    LPIPS, STLPIPS, load_lpips, load_stlpips, lpips_available, lpips_distance, paired_lpips,
)
from neurosql.metrics.memorisation import MEMORISATION_DEFINITIONS, memorisation, nearest_training
from neurosql.metrics.prdc import prdc
from neurosql.metrics.sampling_gap import GAP_DEFINITIONS, edge_steepness, sampling_gap, sharpness_ratio
from neurosql.metrics.two_sample import nn1_test
from neurosql.metrics.ssim_stats import nearest_real_ssim, random_pairs, reconstruction_ssim, sampled_pairs_ssim

CEILING_KEYS = ("nn1_accuracy_vgg", "fd_vgg", "precision_vgg", "recall_vgg")  # reported as f"{key}_ceiling"
METRIC_DEFINITIONS: dict[str, str] = {
    "pfid": "Fréchet distance between Gaussian fits of real and generated features (lower is better; "
            "proxy FID with the fixed random net of App. E unless 'features' says otherwise)",
    "kid": "unbiased MMD^2 with cubic polynomial kernel on the same features, mean over subsets (lower is better; ~0 for equal laws)",
    "kid_se": "standard error of the KID subset average (subset-sampling error only); None when it cannot be "
              "estimated (one subset, or 2 images per set)",
    "kid_subset_size": "images per set in each KID subset: min(1000, half the smaller set), at least 2",
    "nn1_accuracy": "balanced leave-one-out 1-NN accuracy of telling generated from real images by their features "
                    "(0.5: indistinguishable, 1: always told apart, well below 0.5: near-copies; stays meaningful "
                    "with a few dozen images, unlike precision/recall)",
    "nn1_fake": "the generated half of that test: share of generated images whose nearest neighbour is another "
                "generated image (0.5 for equal laws and equal sets; near 1 for mush or blur huddled near the data's "
                "mean, which the balanced accuracy can miss; fidelity)",
    "precision": "share of generated images inside the real k-NN manifold, k=3 (fidelity; higher is better)",
    "recall": "share of real images inside the generated k-NN manifold, k=3 (diversity; higher is better)",
    "density": "mean number of real k-NN balls (k=5) holding each generated image, divided by k (fidelity; ~1 for equal laws, can exceed 1)",
    "coverage": "share of real images whose k-NN ball (k=5) holds a generated image (diversity; higher is better)",
    "prdc_reason": "why precision/recall/density/coverage (and their _vgg twins) are None "
                   "(k-NN needs more than 5 images per set); None when computed",
    "fd_vgg": "Fréchet distance on pretrained VGG features (the five ST-LPIPS layers, unit-normalised over "
              "channels and averaged over positions, 1472-d; images upsampled to 64 px; lower is better; "
              "not comparable with Inception FID)",
    "kid_vgg": "KID on the same VGG features (lower is better)",
    "kid_se_vgg": "standard error of kid_vgg (subset-sampling error only)",
    "nn1_accuracy_vgg": "nn1_accuracy on the VGG features: the first number to read (0.5 is best; near 1 the "
                        "samples are told apart from the held-out images, as clouds or mush are)",
    "nn1_fake_vgg": "nn1_fake on the VGG features (0.5 is best; near 1: the samples resemble each other more "
                    "than any held-out image)",
    "precision_vgg": "precision (k=3) on the VGG features (fidelity; higher is better)",
    "recall_vgg": "recall (k=3) on the VGG features (diversity; higher is better)",
    "density_vgg": "density (k=5) on the VGG features (fidelity; ~1 for equal laws)",
    "coverage_vgg": "coverage (k=5) on the VGG features (diversity; higher is better)",
    **{f"{k}_ceiling": f"{k} of the generator's reconstructions of its training images against the same real "
                        "images: the best its samples can score (images G draws at codes it was fitted to; where "
                        "even these are told apart, the VGG features see detail G does not draw, such as pixel noise)"
       for k in CEILING_KEYS},
    "ceiling_note": "a warning when the VGG features tell even the ceiling images from real ones "
                    "(nn1_accuracy_vgg_ceiling >= 0.95), so the samples' VGG metrics cannot read well; None otherwise",
    "n_vgg": "real and generated images behind the _vgg metrics",
    "knn_note": "a warning when the held-out set is too small for k-NN precision/recall to mean much; None otherwise",
    "vgg_reason": "why the _vgg metrics are None (stlpips-pytorch not installed, or not requested); None when computed",
    **MEMORISATION_DEFINITIONS,
    **GAP_DEFINITIONS,
    "colour_fd": "RGB only: Fréchet distance between Gaussian fits of per-image colour statistics (mean Y, U, V "
                 "and std of U, V; BT.601) of the same real and generated images (lower is better; 0 for equal sets)",
    "ssim": "mean SSIM over random real-generated pairs, as in App. E (higher means closer pixel structure)",
    "n_pairs": "number of random real-generated pairs behind ssim and lpips",
    "nearest_real_ssim": "mean over generated images of the highest SSIM to any real image (near 1 flags copies of real images)",
    "n_nearest": "generated images scored by nearest_real_ssim",
    "lpips": "mean LPIPS over the same pairs as ssim (lower is better; variant in lpips_variant); "
             "None when no weights are available",
    "lpips_variant": "which LPIPS: 'VGG16 (original LPIPS)' from user files, else 'shift-tolerant VGG (ST-LPIPS)' "
                     "(not comparable with original LPIPS numbers)",
    "lpips_reason": "why lpips is None (missing weight files); None when lpips was computed",
    "features": "feature extractor behind pfid, kid and prdc: 'proxy' (fixed random net), 'domain' (trained classifier) or 'custom'",
    "n_real": "real images used for the feature metrics (proxy and _vgg alike)",
    "n_fake": "generated images used for the feature metrics (proxy and _vgg alike)",
    "downstream_accuracy": "accuracy on real test images of a classifier trained only on generated images (§3.4)",
    "downstream_macro_precision": "macro-averaged precision of that synthetic-trained classifier on real test images",
    "downstream_macro_recall": "macro-averaged recall of that synthetic-trained classifier on real test images",
    "ceiling_accuracy": "accuracy of the same classifier recipe trained on real training images (the ceiling)",
    "ceiling_macro_precision": "macro-averaged precision of the real-trained classifier",
    "ceiling_macro_recall": "macro-averaged recall of the real-trained classifier",
    "n_synthetic": "generated images the downstream classifier was trained on",
    "n_real_train": "real images the ceiling classifier was trained on",
    "n_test": "real held-out images both classifiers were tested on",
}


def _feature_net(features, real, real_labels, seed: int) -> tuple[nn.Module, str]:
    if isinstance(features, nn.Module):
        return features, "custom"
    if features == "proxy":
        return ProxyFeatureNet(), "proxy"
    if features == "domain":
        if real_labels is None:
            raise NeuroSQLError("features='domain' trains a classifier on the real images: pass real_labels")
        return domain_feature_net(real, real_labels, seed=seed), "domain"
    raise NeuroSQLError(f"features must be 'proxy', 'domain' or an nn.Module; got {features!r}")


PRDC_KEYS = ("precision", "recall", "density", "coverage")
VGG_TWINS = ("nn1_accuracy", "nn1_fake", "fd", "kid", "kid_se", *PRDC_KEYS)  # _distribution_metrics keys
VGG_KEYS = tuple(f"{k}_vgg" for k in VGG_TWINS)


def _distribution_metrics(f_real, f_fake, kid_subsets: int, kid_subset_size: int, seed: int) -> dict:
    """FD, the 1-NN test, KID and precision/recall/density/coverage of two feature sets; PRDC skipped with its
    reason when too few."""
    out = {"fd": fid_from_features(f_real, f_fake), **nn1_test(f_real, f_fake)}
    out |= kid(f_real, f_fake, kid_subsets, kid_subset_size, seed)
    try:
        out |= prdc(f_real, f_fake) | {"prdc_reason": None}
    except NeuroSQLError as err:  # too few images for the k-NN balls: reported, never raised
        out |= dict.fromkeys(PRDC_KEYS) | {"prdc_reason": str(err)}
    return out


VGG_PIXELS = 1 << 17  # image pixels per VGG batch (32 images at 64 px): 256 of them took 1.5 GB, 32 half, as fast
# (the end-of-train evaluation of 288 grey 64-px patches, whole process)


def _vgg_metrics(real_sub, fake_order, n_fake: int, enabled: bool, kid_subsets: int, kid_subset_size: int,
                 seed: int, batch_size: int, ceiling=None, fitted=None, sampler=None) -> dict:
    """The ``VGG_KEYS`` of the first ``n_fake`` of ``fake_order`` on pretrained VGG features, or all None
    with ``vgg_reason``; with ``ceiling`` images, also the CEILING_KEYS of the first ``len(real_sub)`` of
    those against the same real features, and the sampling gap of as many of ``fake_order`` against all of
    them (its 1-NN test only with VGG features; its fit check with ``fitted``, the training images of the
    ceiling's codes). Both sets of samples are prefixes of ``fake_order``, so each sample's features are
    computed once."""
    ok, reason = stlpips_available() if enabled else (False, "not requested (vgg_features=False)")
    batch_size = min(batch_size, max(1, VGG_PIXELS // real_sub[0, 0].numel()))
    n_gap = 0 if ceiling is None else min(len(ceiling), len(fake_order))
    gap = (lambda f_samples=None, f_ceiling=None: {} if ceiling is None else
           sampling_gap(fake_order[:n_gap], ceiling, f_samples, f_ceiling, sampler, fitted))
    if not ok:
        return dict.fromkeys(VGG_KEYS) | {"vgg_reason": reason} | gap()
    net = VGGFeatureNet(load_stlpips(device=real_sub.device))
    f_real = extract_features(net, real_sub, batch_size)  # (m, 1472)
    f_order = extract_features(net, fake_order[:max(n_fake, n_gap)], batch_size)
    f_fake = f_order[:n_fake]
    got = _distribution_metrics(f_real, f_fake, kid_subsets, kid_subset_size, seed)
    out = {f"{k}_vgg": got[k] for k in VGG_TWINS} | {"vgg_reason": None}
    if ceiling is not None:
        f_ceiling = extract_features(net, ceiling, batch_size)  # (k, 1472)
        got = _distribution_metrics(f_real, f_ceiling[:len(real_sub)], kid_subsets, kid_subset_size, seed)
        out |= {f"{k}_ceiling": got[k.removesuffix("_vgg")] for k in CEILING_KEYS}
        out |= gap(f_order[:n_gap], f_ceiling)
    return out


# What sees sample quality, in the order every summary, metrics.json and report.md shows it first.
LEAD_KEYS = ("gap_nn1_vgg", "sharpness_ratio", "fit_ssim", "nn1_accuracy_vgg", "nn1_fake_vgg", "fd_vgg",
             "precision_vgg", "recall_vgg", "memorisation_ratio", "memorisation_ratio_2nn", "copy_fraction")


def quality_first(metrics: dict) -> dict:
    """``metrics`` with the LEAD_KEYS it holds moved to the front, the rest in their order."""
    return {k: metrics[k] for k in LEAD_KEYS if k in metrics} | metrics


KNN_RELIABLE = 100  # images per set below which k-NN precision/recall move in coarse steps
NN1_RELIABLE = 20  # images per set below which the 1-NN test's steps, 1 / (2 n), are coarse too


def knn_note(n: int) -> str | None:
    """A warning when ``n`` images per set are too few for k-NN precision/recall to mean much."""
    if n >= KNN_RELIABLE:
        return None
    first = ("read nn1_accuracy_vgg, fd_vgg and the memorisation check first" if n >= NN1_RELIABLE else
             f"below {NN1_RELIABLE} the 1-NN test moves in steps of {1 / (2 * n):.2f} too: judge by samples.png "
             "and nearest.png")
    return (f"only {n} held-out images per set: k-NN precision/recall move in steps of {1 / n:.2f} and their "
            f"k-NN balls are wide; read them as coarse (at least ~{KNN_RELIABLE} images are needed), and {first}")


CEILING_TOLD = 0.95  # the ceiling's VGG 1-NN accuracy from which its images count as always told apart


def ceiling_note(nn1_ceiling: float | None, n: int = NN1_RELIABLE) -> str | None:
    """A warning when the VGG features tell the ceiling images (G's own reconstructions) from real ones, with
    at least NN1_RELIABLE images a set (below, knn_note already says to judge by the pictures)."""
    if nn1_ceiling is None or nn1_ceiling < CEILING_TOLD or n < NN1_RELIABLE:
        return None
    return (f"the VGG features tell even the generator's reconstructions of its training images from real images "
            f"(1-NN accuracy {nn1_ceiling:.2f}): they see detail it does not draw, such as pixel noise, so its "
            "samples' VGG metrics cannot read well on these images; compare them with the *_vgg_ceiling values and "
            "look at samples.png beside reconstructions.png")


def evaluate_images(real, fake, *, real_labels=None, n: int = 2048, seed: int = 0, features="proxy",
                    n_pairs: int = 50, n_nearest: int = 200, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    vgg_path=None, lin_path=None, vgg_features: bool = True, n_vgg: int | None = None,
                    batch_size: int = 256, ceiling=None, fitted=None, sampler: str | None = None) -> dict:
    """All image metrics of generated ``fake`` against ``real``, in one dict.

    Feature metrics (pfid, kid, precision/recall/density/coverage) use
    ``min(n, len(real), len(fake))`` images of each set chosen with ``seed``
    and one extractor: ``"proxy"`` (paper App. E), ``"domain"`` (a classifier
    trained on ``real`` with ``real_labels``; pass real *training* images) or
    any module mapping images to (b, d). The same images also give the
    ``_vgg`` metrics on pretrained VGG features when ``vgg_features`` and the
    ``stlpips-pytorch`` package is installed (the costly part: about 70 ms per
    image on one CPU core), on the first ``n_vgg`` of them when given;
    ``knn_note`` warns when fewer than KNN_RELIABLE images per set stand
    behind the k-NN metrics. ``ceiling``: images that bound what ``fake`` can
    score (a generator's reconstructions of its training images, at least as many
    as the VGG metrics use); their VGG metrics are the ``*_ceiling`` keys, and all of them are behind the
    sampling gap of up to as many ``fake`` images (:func:`~neurosql.metrics.sampling_gap.sampling_gap`;
    ``fitted``: the training images the ceiling images reconstruct, in their order, for its fit check;
    ``sampler`` names the --sampler in use, for its advice). SSIM and LPIPS use ``n_pairs`` random pairs;
    nearest-real SSIM scores ``n_nearest`` of the chosen generated images
    against all chosen real ones (O(n n_nearest) SSIMs). LPIPS is the original
    one with local files (``lpips_available``), else ST-LPIPS. A metric that
    cannot be computed on the given images is None with its ``*_reason``.
    Shapes: real (N, C, H, W), fake (M, C, H, W) in [0, 1]. Keys are
    described in ``METRIC_DEFINITIONS``.
    """
    real, fake = check_images(real, "real", 2), check_images(fake, "fake", 2)
    check_same_image_shape(real, fake, "real and fake")
    if n_nearest < 1:
        raise NeuroSQLError(f"n_nearest must be >= 1 generated images; got {n_nearest}")
    net, features_name = _feature_net(features, real, real_labels, seed)
    real_sub, fake_sub = matched_subsets(real, fake, n, seed)
    fake_order = fake[seeded_order(len(fake), seed)]  # fake_sub is its first images
    f_real = extract_features(net, real_sub, batch_size)  # (m, d)
    f_fake = extract_features(net, fake_sub, batch_size)
    proxy = _distribution_metrics(f_real, f_fake, kid_subsets, kid_subset_size, seed)
    out = {"pfid": proxy.pop("fd"), **proxy, "features": features_name,
           "n_real": real_sub.shape[0], "n_fake": fake_sub.shape[0]}
    real_vgg = real_sub[:n_vgg]
    if ceiling is not None:
        ceiling = check_images(ceiling, "ceiling", 2)
        check_same_image_shape(real, ceiling, "real and ceiling")
        order = torch.randperm(len(ceiling), generator=torch.Generator().manual_seed(seed))
        ceiling = ceiling[order]
        if fitted is not None:
            fitted = check_images(fitted, "fitted", 1)
            check_same_image_shape(ceiling, fitted, "ceiling and fitted")
            if len(fitted) != len(order):
                raise NeuroSQLError(f"fitted must hold one training image per ceiling image ({len(order)}); "
                                    f"got {len(fitted)}")
            fitted = fitted[order]
    out |= _vgg_metrics(real_vgg, fake_order, len(real_vgg), vgg_features, kid_subsets, kid_subset_size, seed,
                        batch_size, ceiling, fitted, sampler)
    out["ceiling_note"] = ceiling_note(out.get("nn1_accuracy_vgg_ceiling"), len(real_vgg))
    out["n_vgg"] = None if out["vgg_reason"] else min(len(real_sub), n_vgg or len(real_sub))
    out["knn_note"] = None if out["prdc_reason"] else knn_note(out["n_vgg"] or real_sub.shape[0])  # skipped: said
    out |= colour_metrics(real_sub, fake_sub)
    i, j = random_pairs(real.shape[0], fake.shape[0], n_pairs, seed)
    pairs_real, pairs_fake = real[torch.from_numpy(i)], fake[torch.from_numpy(j)]
    out |= {"ssim": reconstruction_ssim(pairs_real, pairs_fake), "n_pairs": len(i)}
    out |= paired_lpips(pairs_real, pairs_fake, vgg_path, lin_path)
    nearest = fake_sub[:n_nearest]
    out |= {"nearest_real_ssim": nearest_real_ssim(real_sub, nearest), "n_nearest": nearest.shape[0]}
    return out


__all__ = [
    "METRIC_DEFINITIONS", "evaluate_images",
    "ProxyFeatureNet", "VGGFeatureNet", "AntialiasedVGG16", "stlpips_available", "extract_features", "matched_subsets",
    "frechet_distance", "fid_from_features", "proxy_fid", "colour_fd", "colour_error",
    "kid", "mmd2_unbiased", "prdc", "nn1_test", "LEAD_KEYS", "PRDC_KEYS", "quality_first", "memorisation",
    "nearest_training", "knn_note", "ceiling_note", "sampling_gap", "sharpness_ratio", "edge_steepness",
    "reconstruction_ssim", "random_pairs", "sampled_pairs_ssim", "nearest_real_ssim",
    "LPIPS", "STLPIPS", "load_lpips", "load_stlpips", "lpips_available", "lpips_distance", "paired_lpips",
    "SmallCNN", "DomainFeatureNet", "train_classifier", "evaluate_classifier", "macro_precision_recall",
    "downstream_score", "domain_feature_net", "knn_label",
]
