"""VAE, GAN and DDPM baselines on tiny real digits: training, budget parity,
sampling, persistence, the DDPM's parameter match and noise schedule."""

import math

import numpy as np
import pytest
import torch

from neurosql import NeuroSQL, NeuroSQLError
from neurosql.methods import DDPM, GAN, VAE
from neurosql.methods.ddpm import ddim_step, linear_alpha_bars, match_width, q_sample, sampling_timesteps
from neurosql.methods.gan import Discriminator
from neurosql.methods.unet_denoiser import UNetDenoiser
from neurosql.methods.vae import kl_to_standard_normal
from neurosql.core.generators import build_generator, count_parameters
from neurosql.core.losses import loss_per_sample
from neurosql.methods import build_method, load_model
from neurosql.persistence import save_checkpoint

BUDGET = dict(epochs=3, batch_size=16, lr=3e-3, progress=False, seed=2, val_fraction=0.2)
BACKBONE = dict(latent_dim=3, width=8)
TINY_DDPM = dict(denoiser_width=8, timesteps=50, sample_steps=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP start-up and spin-waiting when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted(digits):
    """One tiny fit of each baseline (the DDPM with a fixed small width)."""
    return {
        "vae": VAE(**BUDGET, **BACKBONE).fit(digits),
        "gan": GAN(**BUDGET, **BACKBONE, disc_width=8, encode_steps=3).fit(digits),
        "ddpm": DDPM(**BUDGET, **BACKBONE, **TINY_DDPM).fit(digits),
    }


@pytest.mark.parametrize("name", ["vae", "gan", "ddpm"])
def test_training_logs_finite_losses_and_shared_budget(fitted, name, digits):
    model = fitted[name]
    rows = model.log_.rows
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) and r["time_generator"] > 0
    # 48 digits, 20% held out → 38 training images → batches of 16, 16, 6 per epoch
    assert len(model.train_index_) == 38
    assert model.updates_ == 3 * 3
    assert model.n_parameters == sum(count_parameters(net) for net in model.networks_.values())


def test_vae_and_ddpm_losses_decrease(fitted):
    for name in ("vae", "ddpm"):
        rows = fitted[name].log_.rows
        assert rows[-1]["train_loss"] < rows[0]["train_loss"], name


def test_gan_logs_both_players(fitted):
    rows = fitted["gan"].log_.rows
    assert all(r["d_loss"] > 0 for r in rows)
    assert not hasattr(fitted["gan"], "codes_")  # no training codes: no downstream classifier, as in the paper


def test_same_split_and_updates_as_neurosql(fitted, digits):
    """Budget parity: the held-out rule and the number of generator updates match NeuroSQL's."""
    ref = NeuroSQL(**BUDGET, **BACKBONE, assign_every=2).fit(digits)
    for model in fitted.values():
        assert np.array_equal(model.train_index_, ref.train_index_)
        assert model.updates_ == ref.updates_


def test_best_validation_weights_are_restored(digits):
    X_val = digits[:10]
    model = VAE(**{**BUDGET, "lr": 3e-2, "epochs": 4}, **BACKBONE).fit(digits[10:], X_val)
    best = min(r["val_loss"] for r in model.log_.rows)
    assert model._validation_loss(X_val.to(model.device_)) == pytest.approx(best, rel=1e-5)


def test_vae_codes_are_encoder_means(fitted, digits):
    model = fitted["vae"]
    assert model.prior == "normal"
    assert model.codes_.shape == (38, 3)
    assert torch.allclose(model.codes_.cpu(), model.encode(digits[model.train_index_]), atol=1e-6)
    assert model.reconstruct().shape == (38, 1, 28, 28)


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expected, atol=1e-5)


def test_gan_encode_lowers_the_loss_of_its_starting_codes(fitted, digits):
    model = fitted["gan"]
    X = digits[:8]
    z0 = model.encode(X)  # pool start + encode_steps
    z1 = model.encode(X, refine_steps=20)
    loss = lambda z: float(loss_per_sample(model.decode(z), X, model.config.loss).mean())
    assert z0.shape == (8, 3) and loss(z1) < loss(z0)
    assert model.reconstruct(X).shape == X.shape


@pytest.mark.parametrize("resolution, channels", [(28, 1), (32, 3), (64, 1), (64, 3)])
def test_discriminator_gives_one_logit_per_image(resolution, channels):
    D = Discriminator(resolution, channels, width=4)
    assert D(torch.rand(3, channels, resolution, resolution)).shape == (3,)


@pytest.mark.parametrize("name", ["vae", "gan", "ddpm"])
def test_samples_in_range_and_identical_after_save_load(fitted, name, tmp_path):
    model = fitted[name]
    images = model.sample(6, seed=5)
    assert images.shape == (6, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, model.sample(6, seed=5))
    model.save(tmp_path / "model.pt")
    loaded = load_model(tmp_path, device="cpu")
    assert type(loaded) is type(model)
    assert torch.equal(loaded.sample(6, seed=5), images)
    assert loaded.n_parameters == model.n_parameters
    assert loaded.log_.rows == model.log_.rows


def test_load_model_dispatches_neurosql_and_rejects_unknown_kinds(digits, tmp_path):
    model = NeuroSQL(**{**BUDGET, "epochs": 1}, **BACKBONE).fit(digits)
    model.save(tmp_path / "n.pt")
    assert isinstance(load_model(tmp_path / "n.pt"), NeuroSQL)
    save_checkpoint({"kind": "flow"}, tmp_path / "x.pt")
    with pytest.raises(NeuroSQLError, match="unknown model kind 'flow'"):
        load_model(tmp_path / "x.pt")
    with pytest.raises(NeuroSQLError, match="not found"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(NeuroSQLError, match="holds a 'neurosql' model"):
        VAE.load(tmp_path / "n.pt")


# ----------------------------------------------------------------- DDPM
@pytest.mark.parametrize(
    "generator, resolution, channels",
    [("convnet", 28, 1), ("resnet", 28, 1), ("unet", 28, 1), ("convnet", 64, 3)],
)
def test_ddpm_width_matches_generator_parameters_within_ten_percent(generator, resolution, channels):
    with torch.device("meta"):
        target = count_parameters(build_generator(generator, 16, resolution=resolution, channels=channels))
        width = match_width(target, channels)
        count = count_parameters(UNetDenoiser(channels, width))
    assert abs(count - target) <= 0.10 * target


def test_ddpm_records_its_parameter_match(digits):
    model = DDPM(**{**BUDGET, "epochs": 1}, **BACKBONE, generator="unet", timesteps=50, sample_steps=2).fit(digits)
    match = model.param_match_
    assert match["generator_parameters"] == count_parameters(build_generator("unet", 3, width=8))
    assert match["denoiser_parameters"] == model.n_parameters
    assert abs(match["ratio"] - 1) <= 0.10


def test_linear_schedule_is_the_running_product():
    alpha_bars = linear_alpha_bars(1000, 1e-4, 0.02).numpy()
    betas = np.linspace(1e-4, 0.02, 1000)
    assert np.allclose(alpha_bars, np.cumprod(1 - betas))


def test_forward_noising_matches_the_closed_form():
    """q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): moments over many noise draws."""
    alpha_bars = linear_alpha_bars(1000, 1e-4, 0.02).float()
    x0 = torch.linspace(-1, 1, 16).view(1, 1, 4, 4).expand(20000, 1, 4, 4)
    t = torch.full((20000,), 300)
    x_t = q_sample(x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), alpha_bars)
    a = float(alpha_bars[300])
    assert torch.allclose(x_t.mean(0), math.sqrt(a) * x0[0], atol=0.02)
    assert torch.allclose(x_t.var(0), torch.full((1, 4, 4), 1 - a), rtol=0.05)


def test_ddim_step_with_the_true_noise_lands_on_the_forward_process():
    alpha_bars = linear_alpha_bars(1000, 1e-4, 0.02)
    x0, eps = torch.rand(2, 1, 5, 5) * 2 - 1, torch.randn(2, 1, 5, 5)
    x_t = q_sample(x0, torch.tensor([700, 700]), eps, alpha_bars)
    a_t = float(alpha_bars[700])
    assert torch.allclose(ddim_step(x_t, eps, a_t, 1.0), x0, atol=1e-5)
    expected = q_sample(x0, torch.tensor([200, 200]), eps, alpha_bars)
    assert torch.allclose(ddim_step(x_t, eps, a_t, float(alpha_bars[200])), expected, atol=1e-5)


def test_sampling_timesteps_are_strided_and_descending():
    steps = sampling_timesteps(1000, 100)
    assert len(steps) == len(set(steps)) == 100
    assert steps[0] == 999 and steps[-1] == 0 and steps == sorted(steps, reverse=True)


def test_ddpm_has_no_reconstruction(fitted, digits):
    assert not DDPM.supports_reconstruction and VAE.supports_reconstruction and GAN.supports_reconstruction
    with pytest.raises(NeuroSQLError, match="no latent codes"):
        fitted["ddpm"].reconstruct(digits[:2])


# ---------------------------------------------------------------- errors
def test_bad_input_raises_neurosql_error(digits):
    with pytest.raises(NeuroSQLError, match="not fitted"):
        VAE().sample(4)
    with pytest.raises(NeuroSQLError, match="beta"):
        VAE(beta=-1.0).fit(digits)
    with pytest.raises(NeuroSQLError, match="unknown generator"):
        GAN(generator="mlp").fit(digits)
    with pytest.raises(NeuroSQLError, match="sample-steps"):
        DDPM(sample_steps=2000).fit(digits)
    with pytest.raises(NeuroSQLError, match="unknown method"):
        build_method("flow")
    with pytest.raises(NeuroSQLError, match="unknown parameter"):
        build_method("gan", beta=0.1)
    with pytest.raises(NeuroSQLError, match="within"):
        match_width(10, 1)


def test_gan_step_with_one_discriminator_call_equals_the_two_call_step(digits):
    """The engine's GAN step calls D once on real and fake images together (DDP wants one forward per
    backward); D has no batch statistics, so the update equals the textbook two-call step."""
    import copy

    import torch.nn.functional as F

    from neurosql.methods import GAN

    model = GAN(latent_dim=4, width=8, disc_width=4, epochs=1, ema=0, progress=False, device="cpu").fit(digits)
    twin, x = copy.deepcopy(model), digits[:16]
    for net in (*model.networks_.values(), *twin.networks_.values()):
        net.train()
    model._epoch_generator = torch.Generator().manual_seed(0)
    torch.manual_seed(5)
    model._train_step(x, torch.arange(16))
    G, D = twin.networks_["generator"], twin.networks_["discriminator"]
    g_opt, d_opt = twin.training_.optimizations
    torch.manual_seed(5)
    fake = G(torch.randn(16, 4))
    d_opt.step(F.binary_cross_entropy_with_logits(D(x), torch.ones(16))
               + F.binary_cross_entropy_with_logits(D(fake.detach()), torch.zeros(16)))
    g_opt.step(F.binary_cross_entropy_with_logits(D(fake), torch.ones(16)))
    for name in ("generator", "discriminator"):
        for key, value in model.networks_[name].state_dict().items():
            assert torch.allclose(value.float(), twin.networks_[name].state_dict()[key].float(), atol=1e-6), (name, key)
