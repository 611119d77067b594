"""Tests for the sampling gap: samples against the generator at its training codes (edge steepness, 1-NN)."""
import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from neurosql.errors import NeuroSQLError
from neurosql.metrics import METRIC_DEFINITIONS, edge_steepness, evaluate_images, sampling_gap, sharpness_ratio
from neurosql.metrics.antialiased_vgg import stlpips_available
from neurosql.metrics.sampling_gap import BLURRED_BELOW, GAP_DEFINITIONS, POOR_FIT, TOLD_APART


def _shapes(n: int, seed: int, channels: int = 1) -> torch.Tensor:
    """n 24-px images of a flat square of random tone and colour on a flat background: sharp edges only."""
    rng = np.random.default_rng(seed)
    x = np.broadcast_to(rng.uniform(0, 0.3, (n, channels, 1, 1)), (n, channels, 24, 24)).copy()
    for i, (r, c, s) in enumerate(zip(rng.integers(2, 10, n), rng.integers(2, 10, n), rng.integers(6, 12, n))):
        x[i, :, r:r + s, c:c + s] = rng.uniform(0.6, 1, (channels, 1, 1))
    return torch.from_numpy(x).float()


def _box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.from_numpy(uniform_filter(x.numpy(), size=(1, 1, k, k), mode="nearest")).float()


def test_edge_steepness_is_one_for_a_step_and_one_over_k_for_a_ramp_of_k_pixels():
    step = torch.zeros(2, 1, 20, 20)
    step[:, :, :, 10:] = 1
    assert torch.allclose(edge_steepness(step), torch.ones(2, dtype=torch.float64))
    for k in (2, 4, 5):  # a linear ramp over k pixels: every step on it is 1 / k of the range
        ramp = torch.clamp((torch.arange(20.0) - 10) / k + 0.5, 0, 1).expand(1, 1, 20, 20).clone()
        assert edge_steepness(ramp).item() == pytest.approx(1 / k, rel=1e-6)
    assert edge_steepness(torch.full((1, 1, 8, 8), 0.4)).item() == 0  # flat: no edge, and no 0 / 0


def test_edge_steepness_ignores_tone_and_contrast_and_reads_volumes():
    x = _shapes(6, 0, channels=3)
    assert torch.allclose(edge_steepness(0.5 * x + 0.2), edge_steepness(x), atol=1e-6)  # a darker, flatter copy
    volume = torch.zeros(2, 1, 6, 8, 8)
    volume[:, :, 3:] = 1  # a step along depth only: only the 3-D differences see it
    assert torch.allclose(edge_steepness(volume), torch.ones(2, dtype=torch.float64))


def test_blurred_blends_of_the_ceiling_read_below_the_threshold_and_new_sharp_images_do_not():
    ceiling = _shapes(40, 1)
    blends = _box_blur(0.5 * (_shapes(40, 2) + _shapes(40, 3)), 3)  # two images averaged, edges spread: mush
    assert sharpness_ratio(blends, ceiling) < BLURRED_BELOW
    assert sharpness_ratio(_shapes(40, 4), ceiling) == pytest.approx(1, abs=0.1)  # new images of the same kind


def test_sampling_gap_reads_the_1nn_test_on_the_features_given_and_warns_on_either_check():
    g = torch.Generator().manual_seed(0)
    ceiling, samples = _shapes(30, 5), _shapes(30, 6)
    same, other = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
    out = sampling_gap(samples, ceiling, other, same)
    assert 0.3 < out["gap_nn1_vgg"] < 0.7 and out["gap_note"] is None and out["n_gap"] == (30, 30)
    out = sampling_gap(samples, ceiling, other + 10, same)  # features far apart: always told apart
    assert out["gap_nn1_vgg"] == 1 and f">= {TOLD_APART}" in out["gap_note"] and "softer" not in out["gap_note"]
    out = sampling_gap(_box_blur(samples, 4), ceiling, sampler="prior")  # no features: the sharpness check alone
    assert out["gap_nn1_vgg"] is None and "softer" in out["gap_note"] and "--sampler codes" in out["gap_note"]
    assert "--sampler" not in sampling_gap(_box_blur(samples, 4), ceiling, sampler="codes")["gap_note"]
    assert set(out) == set(GAP_DEFINITIONS) and set(GAP_DEFINITIONS) <= set(METRIC_DEFINITIONS)
    with pytest.raises(NeuroSQLError, match="samples and ceiling"):
        sampling_gap(samples[:, :, :20], ceiling)


def test_faint_blurred_reconstructions_silence_both_checks_and_the_fit_check_says_so():
    """G drawing faint, blurred squares at its codes and between them: samples read like the ceiling, so only
    fit_ssim (the ceiling against the training images it stands for) tells that neither is any good."""
    fitted = _shapes(30, 5)
    faint = lambda x: 0.5 + 0.15 * (_box_blur(x, 5) - 0.5)  # a quarter of the contrast, edges over 5 px
    ceiling, samples = faint(fitted), faint(_shapes(30, 6))
    quiet = sampling_gap(samples, ceiling)
    assert quiet["sharpness_ratio"] > BLURRED_BELOW and quiet["gap_note"] is None and quiet["fit_ssim"] is None
    out = sampling_gap(samples, ceiling, fitted=fitted)
    assert out["fit_ssim"] < POOR_FIT and "reconstructions of its training images are poor" in out["gap_note"]
    good = sampling_gap(samples, ceiling, fitted=ceiling)  # reconstructions equal to their images
    assert good["fit_ssim"] == pytest.approx(1) and good["gap_note"] is None
    shuffled = sampling_gap(_shapes(30, 6), fitted, fitted=fitted.roll(1, dims=0))  # pairs out of order
    assert shuffled["fit_ssim"] < POOR_FIT


@pytest.mark.skipif(not stlpips_available()[0], reason="ST-LPIPS weights unavailable")
def test_evaluate_images_scores_every_ceiling_image_against_as_many_samples():
    """The gap uses all ceiling images and that many samples, however few real images are held out; the
    1-NN test on local VGG texture tells speckled images from the clean ones of the same kind, and new
    clean images pass."""
    real, ceiling = _shapes(8, 7, channels=3), _shapes(40, 8, channels=3)
    clean = _shapes(50, 9, channels=3)
    flip = torch.rand(clean[:, :1].shape, generator=torch.Generator().manual_seed(0)) < 0.1
    speckled = torch.where(flip, 1 - clean, clean)  # 10 % of pixels inverted: the edges stay steep
    args = dict(n=8, n_pairs=2, n_nearest=2, kid_subsets=2, ceiling=ceiling)
    out = evaluate_images(real, speckled, **args)
    assert out["n_gap"] == (40, 40) and out["n_vgg"] == 8
    assert out["gap_nn1_vgg"] >= TOLD_APART and "tell them apart" in out["gap_note"]
    fair = evaluate_images(real, clean, **args)
    assert fair["gap_nn1_vgg"] < TOLD_APART and fair["gap_note"] is None


@pytest.mark.skipif(not stlpips_available()[0], reason="ST-LPIPS weights unavailable")
def test_the_samples_vgg_features_are_computed_once_for_both_the_vgg_metrics_and_the_gap(monkeypatch):
    """The VGG metrics' samples are the first of the gap's, so VGG sees each sample once: 40 samples (the
    gap's), not 8 + 40; and the VGG metrics read the same as without a ceiling."""
    import neurosql.metrics as metrics

    seen = []
    real_extract = metrics.extract_features
    monkeypatch.setattr(metrics, "extract_features",
                        lambda net, x, *a: seen.append((type(net).__name__, len(x))) or real_extract(net, x, *a))
    real, ceiling, samples = _shapes(8, 7, channels=3), _shapes(40, 8, channels=3), _shapes(50, 9, channels=3)
    args = dict(n=8, n_pairs=2, n_nearest=2, kid_subsets=2)
    out = evaluate_images(real, samples, **args, ceiling=ceiling)
    assert [count for net, count in seen if net == "VGGFeatureNet"] == [8, 40, 40]  # real, samples, ceiling
    seen.clear()
    alone = evaluate_images(real, samples, **args)
    assert [count for net, count in seen if net == "VGGFeatureNet"] == [8, 8]
    assert all(out[k] == alone[k] for k in ("fd_vgg", "nn1_accuracy_vgg", "precision_vgg", "recall_vgg"))


def test_at_the_codes_pairs_each_ceiling_image_with_the_training_image_of_its_code():
    """The fit check pairs G(Ẑ_i) with X_{train_index_[i]}: a generator that decodes each code to its own
    training image gives fitted == ceiling, whatever order train_index_ keeps."""
    from types import SimpleNamespace

    from neurosql.evaluation import at_the_codes

    real_train = _shapes(12, 3)
    train_index = torch.tensor([7, 2, 9, 0, 11, 4, 5, 1])  # the 8 images fitted, in the codes' order
    model = SimpleNamespace(has_codes=True, codes_=torch.arange(8.0)[:, None], train_index_=train_index.numpy(),
                            decode=lambda z: real_train[train_index[z[:, 0].long()]])
    ceiling, fitted = at_the_codes(model, 5, seed=0, real_train=real_train)
    assert len(ceiling) == 5 and torch.equal(ceiling, fitted)
    assert at_the_codes(model, 5, seed=0)[1] is None
    assert at_the_codes(SimpleNamespace(has_codes=False), 5, seed=0) == (None, None)


@pytest.mark.skipif(not stlpips_available()[0], reason="ST-LPIPS weights unavailable")
def test_vgg_batches_hold_a_bounded_number_of_pixels(monkeypatch):
    """VGG's activations grow with the pixels of a batch: at most VGG_PIXELS image pixels go through it at once,
    whatever batch_size the proxy features use."""
    import neurosql.metrics as metrics

    batches = []
    real_extract = metrics.extract_features
    monkeypatch.setattr(metrics, "extract_features", lambda net, x, batch_size=256: batches.append(
        (type(net).__name__, batch_size)) or real_extract(net, x, batch_size))
    images = torch.rand(6, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    evaluate_images(images, images.flip(0), n=6, n_pairs=2, n_nearest=2, kid_subsets=2, batch_size=256)
    assert {b for net, b in batches if net == "VGGFeatureNet"} == {metrics.VGG_PIXELS // 128 ** 2}
    assert {b for net, b in batches if net == "ProxyFeatureNet"} == {256}
