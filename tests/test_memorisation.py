"""Tests for the memorisation check: against a brute-force nearest neighbour and on constructed cases."""
import pytest
import torch

from neurosql.core.losses import loss_per_sample
from neurosql.errors import NeuroSQLError
from neurosql.metrics import knn_note, memorisation, nearest_training
from neurosql.metrics.memorisation import MEMORISATION_DEFINITIONS


def _blobs(n: int, seed: int) -> torch.Tensor:
    """n 16-px images of one Gaussian blob at a random place: an image family with a smooth law."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, 1, 1, generator=g) * 10 + 3
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    return torch.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / 8)[:, None]  # (n, 1, 16, 16)


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
    from neurosql.metrics.memorisation import memorisation_note

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
