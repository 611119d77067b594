"""Augmentations in generator steps: each against a brute-force transcription, seeded, and never
in NeuroSQL's cost matrix."""

import numpy as np
import pytest
import torch

import neurosql.methods.neurosql as neurosql_module
from neurosql import NeuroSQL, NeuroSQLError
from neurosql.engine.augment import MAX_SHIFT, augment, parse_augmentations


def _brute_shift(image: np.ndarray, offsets) -> np.ndarray:
    """The image moved by (offset − MAX_SHIFT) along each spatial axis, edge values repeated."""
    padded = np.pad(image, [(0, 0)] + [(MAX_SHIFT, MAX_SHIFT)] * (image.ndim - 1), mode="edge")
    return padded[(slice(None), *[slice(o, o + s) for o, s in zip(offsets, image.shape[1:])])]


@pytest.mark.parametrize("shape", [(6, 2, 9, 7), (4, 1, 8, 8, 8)])
def test_flip_and_shift_match_a_brute_force_transcription(shape):
    x = torch.rand(shape)
    flipped = augment(x, ("hflip",), torch.Generator().manual_seed(3))
    mask = torch.rand(shape[0], generator=torch.Generator().manual_seed(3)) < 0.5
    for i in range(shape[0]):
        assert torch.equal(flipped[i], x[i].flip(-1) if mask[i] else x[i])
    shifted = augment(x, ("shift",), torch.Generator().manual_seed(5))
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (shape[0], len(shape) - 2), generator=torch.Generator().manual_seed(5))
    for i in range(shape[0]):
        assert np.array_equal(shifted[i].numpy(), _brute_shift(x[i].numpy(), offsets[i].tolist()))
    both = augment(x, ("hflip", "shift"), torch.Generator().manual_seed(7))
    assert both.shape == x.shape and torch.equal(both, augment(x, ("hflip", "shift"), torch.Generator().manual_seed(7)))


def test_names_are_checked():
    assert parse_augmentations("") == () and parse_augmentations("hflip, shift") == ("hflip", "shift")
    with pytest.raises(NeuroSQLError, match="unknown augmentation 'rotate'"):
        parse_augmentations("hflip,rotate")
    with pytest.raises(NeuroSQLError, match="unknown augmentation"):
        NeuroSQL(augment="blur").fit(torch.rand(8, 1, 16, 16))


def test_neurosql_regresses_on_augmented_images_but_assigns_the_real_ones(digits, monkeypatch):
    seen = {"cost": [], "target": []}
    real_cost, real_loss = neurosql_module.pairwise_cost, neurosql_module.loss_per_sample

    def cost(x, y, loss, **options):
        seen["cost"].append(x.detach().clone())
        return real_cost(x, y, loss, **options)

    def loss(g, x, name, *options):
        seen["target"].append(x.detach().clone())
        return real_loss(g, x, name, *options)

    monkeypatch.setattr(neurosql_module, "pairwise_cost", cost)
    monkeypatch.setattr(neurosql_module, "loss_per_sample", loss)
    model = NeuroSQL(latent_dim=2, width=8, epochs=2, batch_size=8, assign_batch=8, augment="hflip,shift",
                     progress=False, val_fraction=0, init="random").fit(digits[:32])
    real = {tuple(img.flatten().tolist()) for img in digits[:32]}
    costs = torch.cat([c for c in seen["cost"] if len(c) == 8])  # the m×m costs' images (validation has none here)
    assert all(tuple(img.flatten().tolist()) in real for img in costs)
    targets = torch.cat(seen["target"])
    assert sum(tuple(img.flatten().tolist()) not in real for img in targets) > len(targets) // 2
    assert model.epochs_run_ == 2
