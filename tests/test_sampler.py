"""NeuroSQL's samplers: draws between neighbouring training codes (the default) and the paper's prior."""
from functools import partial

import numpy as np
import pytest
import torch

from neurosql import NeuroSQL
from neurosql.cli import main
from neurosql.core.losses import pairwise_cost
from neurosql.methods import code_sampling
from neurosql.methods.code_sampling import BANDWIDTHS, COPY_RATIO, copy_guard
from neurosql.persistence import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def fitted(digits):
    return NeuroSQL(latent_dim=3, epochs=2, batch_size=16, width=8, seed=0, progress=False, device="cpu").fit(digits)


def test_codes_sampler_is_a_kernel_density_on_the_codes_with_the_nearest_code_bandwidth(fitted):
    z = fitted.sample_latent(2000, seed=3)
    codes = fitted.codes_.cpu().double().numpy()
    n, d = codes.shape
    distance = np.linalg.norm(codes[:, None] - codes[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    h = np.median(distance.min(axis=1))  # brute force: the median nearest-code distance
    g = torch.Generator().manual_seed(3)  # the definition, drawn in the documented order
    i = torch.randint(n, (2000,), generator=g).numpy()
    eps = torch.randn(2000, d, generator=g).double().numpy()
    f = fitted.bandwidth_  # the copy guard's factor
    assert np.allclose(z.double().numpy(), codes[i] + f * h / np.sqrt(d) * eps, atol=1e-5)
    offsets = z.double().numpy() - codes[i]
    assert np.linalg.norm(offsets, axis=1).mean() == pytest.approx(f * h, rel=0.15)  # a step reaches the next code
    assert torch.equal(z, fitted.sample_latent(2000, seed=3))
    assert torch.equal(fitted.sample(5, seed=3), fitted.decode(fitted.sample_latent(5, seed=3)))


def test_prior_sampler_draws_from_the_lattice_prior(fitted):
    paper = fitted.clone().set_params(sampler="prior")
    paper.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_") or k.startswith("_")})
    expected = fitted.lattice_.sample_prior(50, torch.Generator().manual_seed(4))
    assert torch.equal(paper.sample_latent(50, seed=4), expected)


def test_a_checkpoint_from_before_the_sampler_keeps_sampling_from_the_prior(fitted, tmp_path):
    fitted.save(tmp_path / "new.pt")
    state = load_checkpoint(tmp_path / "new.pt")
    assert state["config"]["sampler"] == "codes"
    del state["config"]["sampler"]  # as written before the option existed
    save_checkpoint(state, tmp_path / "old.pt")
    old = NeuroSQL.load(tmp_path / "old.pt")
    assert old.config.sampler == "prior"
    z = fitted.lattice_.sample_prior(8, torch.Generator().manual_seed(0))
    assert torch.equal(old.sample(8, seed=0), fitted.decode(z))


def test_sampler_flag_and_the_paper_preset(tmp_path, capsys):
    folder = tmp_path / "none"
    assert main(["train", "--sampler", "kde", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sampler" in err and "codes" in err and not folder.exists()


def euclidean(a, b):
    return torch.cdist(a.flatten(1), b.flatten(1))


def points(n, d=4, seed=0):
    """n codes in R^d and the same points as 1×1×d "images", so that decoding z is z itself."""
    codes = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return codes, codes.view(n, 1, 1, d)


far_prior = lambda m, generator: 10 + torch.randn(m, 4, generator=generator)  # draws far from every code


def test_copy_guard_widens_the_bandwidth_until_draws_are_new_and_stops_at_the_first_that_is(monkeypatch):
    codes, images = points(200)
    identity = lambda z: z.view(len(z), 1, 1, -1)
    factors = (1.0, 2 ** 0.5, 2.0, 2 ** 1.5)  # wide enough for these points
    monkeypatch.setattr(code_sampling, "BANDWIDTHS", factors)
    f, ratio = copy_guard(codes, images, identity, euclidean, far_prior, seed=0)
    k = factors.index(f)
    assert k >= 1 and ratio >= COPY_RATIO  # at h itself a draw is nearer its code than codes are to each other
    # The same draws with the factors before f only: the last of them still gave copies, the prior not.
    monkeypatch.setattr(code_sampling, "BANDWIDTHS", factors[:k])
    assert copy_guard(codes, images, identity, euclidean, far_prior, seed=0)[0] is None
    monkeypatch.setattr(code_sampling, "COPY_RATIO", 1e9)  # nothing passes: the closest candidate comes back
    before, ratio_before = copy_guard(codes, images, identity, euclidean, lambda m, g: codes[:m], seed=0)
    assert before == factors[k - 1] and 0 < ratio_before < COPY_RATIO < ratio


def test_copy_guard_scales_the_same_draws_for_every_bandwidth(monkeypatch):
    """Common draws: a factor's ratio does not depend on which factors came before it, and with G
    the identity the ratio grows with the factor (noise would make it jump)."""
    codes, images = points(200)
    identity = lambda z: z.view(len(z), 1, 1, -1)
    monkeypatch.setattr(code_sampling, "COPY_RATIO", 1e9)  # every candidate is tried
    ratios = []
    for f in (0.5, 1.0, 2.0):
        monkeypatch.setattr(code_sampling, "BANDWIDTHS", (f,))
        ratios.append(copy_guard(codes, images, identity, euclidean, lambda m, g: codes[:m], seed=0)[1])
        monkeypatch.setattr(code_sampling, "BANDWIDTHS", (0.25, f))
        assert copy_guard(codes, images, identity, euclidean, lambda m, g: codes[:m], seed=0)[1] == ratios[-1]
    assert ratios == sorted(ratios) and ratios[0] < ratios[-1]


def test_copy_guard_sees_a_memorising_generator_whichever_image_a_draw_copies(monkeypatch):
    codes, images = points(300)
    monkeypatch.setattr(code_sampling, "GUARD_CHUNK", 64)  # the images read in several chunks
    nearest_image = lambda z: images[torch.cdist(z, codes).argmin(1)]  # G returns the training image it is near
    f, ratio = copy_guard(codes, images, nearest_image, euclidean, far_prior, seed=1)
    assert ratio == 0.0 and f == BANDWIDTHS[0]  # every draw is a copy, the prior's too; the first tie comes back


def test_copy_guard_keeps_h_for_a_generator_that_makes_new_images():
    codes, images = points(100)
    novel = lambda z: 3 * torch.randn(len(z), 1, 1, 4, generator=torch.Generator().manual_seed(5))  # far from all
    assert copy_guard(codes, images, novel, euclidean, far_prior, seed=0)[0] == BANDWIDTHS[0] == 1.0


def test_fit_records_the_bandwidth_checkpoints_keep_it_and_old_ones_sample_at_h(fitted, tmp_path):
    assert (fitted.bandwidth_ in BANDWIDTHS or fitted.bandwidth_ is None) and fitted.copy_ratio_ is not None
    fitted.save(tmp_path / "new.pt")
    again = NeuroSQL.load(tmp_path / "new.pt")
    assert again.bandwidth_ == fitted.bandwidth_ and torch.equal(again.sample(6, seed=2), fitted.sample(6, seed=2))
    state = load_checkpoint(tmp_path / "new.pt")
    state["extra"] = {k: v for k, v in state["extra"].items() if k not in ("bandwidth", "copy_ratio")}
    save_checkpoint(state, tmp_path / "old.pt")
    assert NeuroSQL.load(tmp_path / "old.pt").bandwidth_ == 1.0


def test_fit_takes_the_bandwidth_of_the_copy_guard_on_its_training_images(fitted, digits):
    train = digits[torch.as_tensor(fitted.train_index_)]
    with torch.no_grad():
        expected = copy_guard(fitted.codes_, train, fitted.decode, partial(pairwise_cost, loss=fitted.config.loss),
                              fitted._prior_sample, fitted.config.seed)
    assert (fitted.bandwidth_, fitted.copy_ratio_) == pytest.approx(expected)


def test_where_the_copy_guard_chose_the_prior_sample_draws_from_it(fitted):
    before = fitted.bandwidth_
    try:
        fitted.bandwidth_ = None
        expected = fitted.lattice_.sample_prior(20, torch.Generator().manual_seed(7))
        assert torch.equal(fitted.sample_latent(20, seed=7), expected)
    finally:
        fitted.bandwidth_ = before


def test_the_prior_sampler_skips_the_copy_guard(digits):
    model = NeuroSQL(latent_dim=3, epochs=1, batch_size=16, width=8, seed=0, progress=False, sampler="prior").fit(digits[:40])
    assert model.bandwidth_ == 1.0 and model.copy_ratio_ is None


def test_a_fit_whose_every_draw_copies_warns(digits, monkeypatch):
    import neurosql.methods.neurosql as model_module

    monkeypatch.setattr(model_module, "copy_guard", lambda *args: (1.0, 0.3))
    with pytest.warns(UserWarning, match="samples may copy training images: .* 0.30"):
        NeuroSQL(latent_dim=3, epochs=1, batch_size=16, width=8, seed=0, progress=False).fit(digits[:40])


def test_kernel_bandwidth_is_exact_up_to_h_codes_and_a_close_fixed_estimate_above(monkeypatch):
    codes = torch.randn(600, 4, generator=torch.Generator().manual_seed(0))
    distance = torch.cdist(codes.double(), codes.double()).fill_diagonal_(float("inf"))
    exact = float(distance.min(dim=1).values.median())
    assert code_sampling.kernel_bandwidth(codes) == pytest.approx(exact, rel=1e-5)
    rows = torch.tensor([3, 9, 598])
    assert torch.allclose(code_sampling.nearest_distances(codes, rows).double(), distance.min(dim=1).values[rows],
                          atol=1e-5)
    monkeypatch.setattr(code_sampling, "H_CODES", 200)  # a third of the codes stand in for all
    estimate = code_sampling.kernel_bandwidth(codes)
    assert estimate != pytest.approx(exact, rel=1e-6) and estimate == pytest.approx(exact, rel=0.1)
    assert code_sampling.kernel_bandwidth(codes) == estimate  # a fixed subset: the same h every call


def test_sample_computes_h_once_per_state_of_the_codes(fitted, monkeypatch):
    import copy

    import neurosql.methods.neurosql as module

    model, calls = copy.deepcopy(fitted), []
    monkeypatch.setattr(module, "kernel_bandwidth", lambda codes: calls.append(1) or code_sampling.kernel_bandwidth(codes))
    first = model.sample_latent(8, seed=1)
    assert torch.equal(model.sample_latent(8, seed=1), first) and len(calls) == 1  # cached
    model.codes_.mul_(2)  # training moves the codes in place: h follows them
    assert torch.allclose(model.sample_latent(8, seed=1), 2 * first, atol=1e-5) and len(calls) == 2
