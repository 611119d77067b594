"""Tests for the pretrained perceptual metrics: ST-LPIPS (VGG) and the VGG-feature distribution metrics.

The weights come from the stlpips-pytorch wheel (the [metrics] extra, installed
by `make setup`); tests that need them skip when it is missing.
"""
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from skimage import data, transform

from neurosql.errors import NeuroSQLError
from neurosql.metrics import (
    METRIC_DEFINITIONS, STLPIPS, VGGFeatureNet, evaluate_images, fid_from_features, load_stlpips, lpips_distance,
    paired_lpips, stlpips_available,
)
from neurosql.metrics.antialiased_vgg import VGG16_BLOCKS, BlurDownsample, read_state, stlpips_weights_path
from neurosql.metrics.features import pooled_unit_features
from neurosql.metrics.lpips import LPIPS_CHANNELS, STLPIPS_VARIANT, heads_sum

HAVE_WEIGHTS, WHY_NOT = stlpips_available()
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"ST-LPIPS weights unavailable: {WHY_NOT}")


@pytest.fixture(scope="module")
def net():
    return load_stlpips()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma))).float()


def noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


def photographs(size: int = 64) -> torch.Tensor:
    """Four scikit-image photographs (camera, astronaut, chelsea, coffee) as (4, 3, size, size) in [0, 1]."""
    out = []
    for image in (data.camera(), data.astronaut(), data.chelsea(), data.coffee()):
        image = np.atleast_3d(transform.resize(image, (size, size), anti_aliasing=True))  # (size, size, 1 or 3)
        out.append(torch.from_numpy(image.transpose(2, 0, 1)).float().expand(3, -1, -1))
    return torch.stack(out)


# ---------------------------------------------------------------- the weight file and the network

@needs_weights
def test_weight_file_loads_with_no_missing_or_unexpected_keys():
    state = read_state(stlpips_weights_path())
    expected = STLPIPS().state_dict()
    assert set(state) == set(expected)
    assert all(state[k].shape == expected[k].shape for k in state)
    # the anti-aliasing filters in the file are the 3x3 binomial that BlurDownsample builds
    for key in [k for k in state if k.endswith(".filt")]:
        assert torch.equal(state[key], BlurDownsample(state[key].shape[0]).filt), key
    assert all((state[f"lin{l}.model.1.weight"] >= 0).all() for l in range(len(LPIPS_CHANNELS)))
    net = load_stlpips()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def _stlpips_by_hand(state: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ST-LPIPS from the raw state dict with functional ops; x, y (n, 3, 64, 64) in [0, 1]."""
    shift, scale = state["scaling_layer.shift"], state["scaling_layer.scale"]

    def taps(t):
        t, out, index = (2 * t - 1 - shift) / scale, [], 0
        for k, widths in enumerate(VGG16_BLOCKS, start=1):
            if k > 1:  # max-pool 2x2 at stride 1, reflect pad 2, binomial blur at stride 2
                t = F.max_pool2d(t, 2, stride=1)
                t = F.conv2d(F.pad(t, (2,) * 4, mode="reflect"), state[f"net.slice{k}.{index + 1}.filt"],
                             stride=2, groups=t.shape[1])
                index += 2
            for _ in widths:
                prefix = f"net.slice{k}.{index}"
                t = F.relu(F.conv2d(t, state[f"{prefix}.weight"], state[f"{prefix}.bias"], padding=1))
                index += 2
            out.append(t / (t.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    weights = [state[f"lin{l}.model.1.weight"] for l in range(len(LPIPS_CHANNELS))]
    return sum((w * (a - b) ** 2).sum(1, keepdim=True).mean((1, 2, 3)) for w, a, b in zip(weights, taps(x), taps(y)))


@needs_weights
def test_stlpips_matches_its_definition_and_upsamples_small_images(net, digits):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    by_hand = _stlpips_by_hand(read_state(stlpips_weights_path()), x, y)
    assert np.allclose(lpips_distance(net, x, y), by_hand.numpy(), rtol=1e-4)
    # 28-pixel digits are upsampled bilinearly to 64 and replicated to RGB before the trunk
    a, b = digits[:2], digits[2:4]
    up = lambda t: F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)  # noqa: E731
    assert np.allclose(lpips_distance(net, a, b), lpips_distance(net, up(a), up(b)), rtol=1e-5)
    # images whose shorter side reaches 64 are left at their size
    wide = torch.rand(1, 3, 64, 80, generator=g)
    assert [t.shape[-2:] for t in net.taps(wide)][0] == (64, 80)


@needs_weights
def test_stlpips_is_zero_on_equal_images_symmetric_and_positive(net, digits):
    x, y = digits[:6], digits[6:12]
    assert np.array_equal(lpips_distance(net, x, x), np.zeros(6))
    assert np.allclose(lpips_distance(net, x, y), lpips_distance(net, y, x), rtol=1e-6)
    assert (lpips_distance(net, x, y) > 0.05).all()


# ---------------------------------------------------------------- it orders distortions as a person would

@needs_weights
@pytest.mark.parametrize("kind", ["digits", "photographs"])
def test_stlpips_grows_with_blur_and_with_noise_for_every_image(net, digits, kind):
    images = digits[::8][:6] if kind == "digits" else photographs()
    blurred = [lpips_distance(net, images, blur(images, s)) for s in (0.5, 1, 2, 3)]
    noised = [lpips_distance(net, images, noise(images, s)) for s in (0.05, 0.1, 0.2, 0.4)]
    for curve in (np.stack(blurred), np.stack(noised)):  # (levels, images)
        assert (np.diff(curve, axis=0) > 0).all(), curve


@pytest.fixture(scope="module")
def distorted(net, mnist):
    """For 48 real digits: ST-LPIPS to each distorted version and pooled VGG features of every version."""
    X, y = mnist
    refs = X[np.concatenate([np.flatnonzero(y == c)[5:10] for c in range(10)])][:48]
    versions = {"ref": refs, "shift1": torch.roll(refs, 1, dims=3), "blur1": blur(refs, 1), "blur3": blur(refs, 3),
                "noise0.05": noise(refs, 0.05), "noise0.1": noise(refs, 0.1), "noise0.3": noise(refs, 0.3),
                "texture": noise(torch.full_like(refs, 0.35), 0.12)}  # gray noise, no digit at all
    heads = [getattr(net, f"lin{l}") for l in range(len(LPIPS_CHANNELS))]
    with torch.no_grad():
        ref_taps = net.taps(refs)
        out = {}
        for name, images in versions.items():
            taps = net.taps(images)
            out[name] = (heads_sum(heads, ref_taps, taps).numpy(), pooled_unit_features(taps).double().numpy())
    return out


@needs_weights
def test_two_alternative_choices_agree_with_a_person(distorted):
    # (closer, farther) for the same reference: 4 kinds x 48 digits = 192 triplets
    for near, far in [("blur1", "noise0.3"), ("shift1", "noise0.3"), ("noise0.05", "blur3"), ("shift1", "blur1")]:
        agree = (distorted[near][0] < distorted[far][0]).mean()
        assert agree >= 0.95, (near, far, agree)
    # shift tolerance: a one-pixel shift costs less than faint noise on almost every digit
    assert (distorted["shift1"][0] < distorted["noise0.05"][0]).mean() >= 0.9


@needs_weights
def test_fd_on_vgg_features_is_zero_for_equal_sets_and_grows_with_noise(distorted):
    ref = distorted["ref"][1]  # (48, 1472)
    fd = [fid_from_features(ref, distorted[name][1]) for name in ("noise0.05", "noise0.1", "noise0.3")]
    assert abs(fid_from_features(ref, ref)) < 1e-3 * fd[0]
    assert 0 < fd[0] < fd[1] < fd[2], fd
    # no digit at all is farther than a noisy digit (raw, unnormalised activations get this backwards)
    assert fid_from_features(ref, distorted["texture"][1]) > fd[2]


# ---------------------------------------------------------------- evaluation

@needs_weights
def test_evaluate_images_reports_stlpips_and_vgg_metrics(mnist):
    X = mnist[0]
    out = evaluate_images(X[:12], X[100:112], n=12, n_pairs=4, n_nearest=2, kid_subsets=3)
    assert set(out) <= set(METRIC_DEFINITIONS)
    assert out["lpips_variant"] == STLPIPS_VARIANT and out["lpips"] > 0 and out["lpips_reason"] is None
    assert out["vgg_reason"] is None and out["n_real"] == out["n_fake"] == 12
    for key in ("nn1_accuracy_vgg", "nn1_fake_vgg", "fd_vgg", "kid_vgg", "kid_se_vgg", "precision_vgg", "recall_vgg",
                "density_vgg", "coverage_vgg", "nn1_accuracy", "nn1_fake"):
        assert np.isfinite(out[key]), key
    features = VGGFeatureNet(load_stlpips())(X[:12])
    assert features.shape == (12, 1472)
    # per layer, the mean of unit vectors: norm at most 1, and 1 only if every position points the same way
    norms = torch.stack([p.norm(dim=1) for p in features.split([64, 128, 256, 512, 512], dim=1)])
    assert ((norms > 0) & (norms <= 1 + 1e-6)).all()


@needs_weights
def test_the_ceiling_scores_as_its_own_images_would_and_warns_when_told_apart(mnist):
    """The *_vgg_ceiling keys are the VGG metrics the ceiling images would get as the generated set (against the
    same real images); blurred real images, told apart by their missing detail, bring the ceiling note."""
    X = mnist[0]
    real, fake, ceiling = X[:24], X[100:124], X[200:224]
    args = dict(n=24, n_pairs=2, n_nearest=2, kid_subsets=3)
    out, alone = evaluate_images(real, fake, ceiling=ceiling, **args), evaluate_images(real, ceiling, **args)
    for key in ("nn1_accuracy_vgg", "fd_vgg", "precision_vgg", "recall_vgg"):
        assert out[f"{key}_ceiling"] == pytest.approx(alone[key], rel=1e-5, abs=1e-6), key
    assert out["ceiling_note"] is None and out["precision_vgg_ceiling"] > 0.5 and set(out) <= set(METRIC_DEFINITIONS)
    blurred = torch.from_numpy(gaussian_filter(ceiling.numpy(), (0, 0, 1.5, 1.5)))
    out = evaluate_images(real, fake, ceiling=blurred, **args)
    assert out["nn1_accuracy_vgg_ceiling"] >= 0.95 and "1-NN accuracy" in out["ceiling_note"]
    assert evaluate_images(real, fake, **args)["ceiling_note"] is None  # no ceiling given, no keys
    with pytest.raises(NeuroSQLError, match="real and ceiling"):
        evaluate_images(real, fake, ceiling=X[:24, :, :14], **args)


@needs_weights
def test_too_few_images_skip_metrics_with_a_reason_instead_of_raising(mnist):
    X = mnist[0]
    out = evaluate_images(X[:2], X[10:12], n_pairs=2, n_nearest=2, kid_subsets=4)
    for key in ("precision", "recall", "density", "coverage", "precision_vgg", "coverage_vgg"):
        assert out[key] is None, key
    assert "more than k = 5" in out["prdc_reason"]
    assert out["kid_subset_size"] == 2 and out["kid_se"] is None and out["kid_se_vgg"] is None
    assert np.isfinite(out["kid"]) and np.isfinite(out["fd_vgg"]) and out["lpips"] is not None


def test_missing_package_is_reported_not_raised(monkeypatch, mnist):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("stlpips_pytorch", "lpips") else real_find_spec(name, *a))
    ok, reason = stlpips_available()
    assert not ok and "neurosql[metrics]" in reason
    X = mnist[0]
    out = evaluate_images(X[:8], X[8:16], n_pairs=3, n_nearest=2, kid_subsets=2)
    assert out["lpips"] is None and out["lpips_variant"] is None and "neurosql[metrics]" in out["lpips_reason"]
    assert out["fd_vgg"] is None and out["kid_vgg"] is None and out["vgg_reason"] == reason
    assert paired_lpips(X[:2], X[2:4])["lpips"] is None
    with pytest.raises(NeuroSQLError, match="neurosql\\[metrics\\]"):
        load_stlpips()
    not_requested = evaluate_images(X[:8], X[8:16], n_pairs=3, n_nearest=2, kid_subsets=2, vgg_features=False)
    assert not_requested["fd_vgg"] is None and "not requested" in not_requested["vgg_reason"]
