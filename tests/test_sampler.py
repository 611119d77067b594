"""NeuroSQL's samplers: draws between neighbouring training codes (the default) and the paper's prior."""
import numpy as np
import pytest
import torch

from neurosql import NeuroSQL
from neurosql.cli import main
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
    assert np.allclose(z.double().numpy(), codes[i] + h / np.sqrt(d) * eps, atol=1e-5)
    offsets = z.double().numpy() - codes[i]
    assert np.linalg.norm(offsets, axis=1).mean() == pytest.approx(h, rel=0.15)  # a step reaches the next code
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
