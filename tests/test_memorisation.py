"""Tests for the memorisation check: against a brute-force nearest neighbour and on constructed cases."""
import pytest
import torch
from scipy.ndimage import gaussian_filter

from neurosql.core.losses import loss_per_sample
from neurosql.errors import NeuroSQLError
from neurosql.metrics import knn_note, memorisation, nearest_training
from neurosql.metrics.memorisation import MEMORISATION_DEFINITIONS, memorisation_note, nearest_two


def _blobs(n: int, seed: int) -> torch.Tensor:
    """n 16-px images of one Gaussian blob at a random place: an image family with a smooth law."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, 1, 1, generator=g) * 10 + 3
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    return torch.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / 8)[:, None]  # (n, 1, 16, 16)


def _rectangles(n: int, seed: int, size: int = 24) -> torch.Tensor:
    """n images of three overlapping flat rectangles of random place, size and grey on a grey ground: sharp edges
    that blur softens, bringing an image closer to every other one under ℓ."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.full((n, 1, size, size), 0.2)
    for _ in range(3):
        top, left = torch.randint(0, size - 6, (2, n, 1, 1), generator=g)
        height, width = torch.randint(4, 12, (2, n, 1, 1), generator=g)
        inside = (yy >= top) & (yy < top + height) & (xx >= left) & (xx < left + width)  # (n, size, size)
        images = torch.where(inside[:, None], torch.rand(n, 1, 1, 1, generator=g), images)
    return images


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of σ pixels over height and width."""
    return torch.from_numpy(gaussian_filter(images.numpy(), (0, 0, sigma, sigma)))


def test_nearest_two_matches_brute_force():
    images, train = _blobs(7, 1), _blobs(9, 2)
    first, second = nearest_two(images, train)
    brute = torch.stack([loss_per_sample(x.expand_as(train), train) for x in images]).sort(dim=1).values  # (7, 9)
    assert torch.allclose(first, brute[:, 0], atol=1e-5) and torch.allclose(second, brute[:, 1], atol=1e-5)
    with pytest.raises(NeuroSQLError, match="at least 2 training images"):
        nearest_two(images, train[:1])


def test_the_2nn_ratio_reads_soft_new_images_as_new_and_soft_copies_as_copies():
    """Blur brings new images closer to every training image: the plain ratio falls, the 2-NN ratio stays at
    about 1; blurred training images stay copies under both, and only those are warned of."""
    train, held_out, new = _rectangles(300, 0), _rectangles(100, 1), _rectangles(100, 2)
    assert memorisation(new, train, held_out)["memorisation_ratio_2nn"] == pytest.approx(1, abs=0.05)
    soft_new = memorisation(_blur(new, 1.0), train, held_out)
    assert soft_new["memorisation_ratio"] < 0.9 and soft_new["memorisation_ratio_2nn"] == pytest.approx(1, abs=0.05)
    soft_copies = memorisation(_blur(train[:100], 1.0), train, held_out)
    assert soft_copies["memorisation_ratio"] < 0.5 and soft_copies["memorisation_ratio_2nn"] < 0.5
    assert "near-copies" in soft_copies["memorisation_note"] and soft_new["memorisation_note"] is None


def test_the_copy_warning_needs_both_ratios():
    """A plain ratio under the bar is a copy only when the 2-NN ratio agrees (held-out grey patches blurred by
    1.2 px: 0.77 beside 0.99, benchmarks.memorisation_blur); without a 2-NN ratio the plain one decides."""
    assert memorisation_note(0.6, 0.02, "prior", ratio_2nn=0.98) is None
    assert "near-copies" in memorisation_note(0.6, 0.4, "prior", ratio_2nn=0.85)
    assert "near-copies" in memorisation_note(0.6, 0.4, "prior")
    assert memorisation_note(0.9, 0.0, "prior", ratio_2nn=0.5) is None  # the plain ratio says no copies


def test_nearest_training_matches_brute_force():
    images, train = _blobs(7, 1), _blobs(9, 2)
    distance, index = nearest_training(images, train)
    brute = torch.stack([loss_per_sample(x.expand_as(train), train) for x in images])  # (7, 9)
    assert torch.equal(index, brute.argmin(dim=1))
    assert torch.allclose(distance, brute.min(dim=1).values, atol=1e-5)


def test_nearest_training_of_volumes_matches_brute_force_under_the_3d_cost():
    images, train = torch.rand(3, 1, 8, 8, 8), torch.rand(5, 1, 8, 8, 8)
    distance, index = nearest_training(images, train)
    brute = torch.stack([loss_per_sample(x.expand_as(train), train) for x in images])  # (3, 5), 3-D SSIM + L1
    assert torch.equal(index, brute.argmin(dim=1))
    assert torch.allclose(distance, brute.min(dim=1).values, atol=1e-5)
    copies = memorisation(train[:2], train, images)
    assert copies["memorisation_ratio"] == pytest.approx(0, abs=1e-4) and copies["copy_fraction"] == 1


def test_copies_score_zero_and_new_draws_score_about_one():
    train, held_out, new = _blobs(300, 0), _blobs(100, 1), _blobs(100, 2)
    copies = memorisation(train[:30], train, held_out)
    assert copies["memorisation_ratio"] == pytest.approx(0, abs=1e-4) and copies["copy_fraction"] == 1
    fresh = memorisation(new, train, held_out)
    assert 0.85 < fresh["memorisation_ratio"] < 1.15 and fresh["copy_fraction"] < 0.1
    noisy = (train[:30] + 0.002 * torch.randn(30, 1, 16, 16, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    noisy_copies = memorisation(noisy, train, held_out)
    assert noisy_copies["memorisation_ratio"] < 0.2  # near-copies: far closer than new images come
    assert set(fresh) == set(MEMORISATION_DEFINITIONS) and fresh["n_memorisation"] == (100, 300, 100)


def test_the_note_names_copies_and_samples_unlike_the_data_and_is_quiet_otherwise():
    """Copies and mush (blurred blob pairs smeared over the image) are flagged, new draws are not."""
    train, held_out, new = _blobs(300, 0), _blobs(100, 1), _blobs(100, 2)
    assert memorisation(new, train, held_out)["memorisation_note"] is None
    assert "near-copies" in memorisation(train[:30], train, held_out)["memorisation_note"]
    mush = (0.5 * (new + new.roll(1, 0)) + 0.3 * torch.rand(100, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    result = memorisation(mush.clamp(0, 1), train, held_out)
    assert result["memorisation_ratio"] > 1.2 and "farther from every training image" in result["memorisation_note"]


def test_the_note_advises_the_other_sampler_never_the_one_in_use():
    """Copies under 'codes' suggest the prior; mush under 'prior' suggests the codes; a baseline (no
    sampler) is told neither."""
    assert "--sampler prior" in memorisation_note(0.5, 0.4, "codes")
    assert "--sampler" not in memorisation_note(0.5, 0.4, "prior") + memorisation_note(0.5, 0.4, None)
    assert "--sampler codes" in memorisation_note(1.5, 0.0, "prior")
    assert "--sampler" not in memorisation_note(1.5, 0.0, "codes") + memorisation_note(1.5, 0.0, None)


def test_memorisation_refuses_a_test_split_inside_the_training_set():
    train = _blobs(10, 0)
    with pytest.raises(NeuroSQLError, match="disjoint"):
        memorisation(_blobs(5, 3), train, train[:4])
    with pytest.raises(NeuroSQLError):
        memorisation(_blobs(5, 3), train, train[:, :, :8])


def test_knn_note_flags_test_sets_below_one_hundred_images():
    assert knn_note(100) is None and knn_note(5000) is None
    assert "72 held-out images" in knn_note(72) and "0.01" in knn_note(72)
    assert "read nn1_accuracy_vgg" in knn_note(20) and "1-NN test moves" not in knn_note(20)
    assert "1-NN test moves in steps of 0.06" in knn_note(8) and "nearest.png" in knn_note(8)


def test_evaluation_tells_the_note_which_sampler_drew():
    from neurosql import NeuroSQL
    from neurosql.evaluation import sampler_of
    from neurosql.methods import build_method

    assert sampler_of(NeuroSQL(sampler="prior")) == "prior" and sampler_of(NeuroSQL()) == "codes"
    assert sampler_of(build_method("vae")) is None
