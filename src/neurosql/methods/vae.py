"""Variational auto-encoder baseline (paper App. I): the shared generator as
decoder, an MLP encoder on flattened pixels, SSIM+L1 reconstruction plus β·KL.

Reference: Kingma & Welling, Auto-Encoding Variational Bayes (ICLR 2014).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import check_images
from .latent_generator import LatentGenerator
from .latents import check_refinement, optimise_latents
from ..core.generators import build_generator
from ..core.losses import loss_per_sample
from ..engine.config import LatentGeneratorConfig, option

LOGVAR_RANGE = (-12.0, 8.0)  # keeps exp(logvar) finite while the encoder is still untrained


@dataclass
class VAEConfig(LatentGeneratorConfig):
    """VAE hyper-parameters; the budget fields are shared with every method."""

    beta: float = option(0.005, "weight β of the KL term (paper: 0.005)", within="[0, inf)")
    encoder_hidden: int = option(256, "width of the encoder's two hidden layers", within="[1, inf)")


class MLPEncoder(nn.Module):
    """q(z|x) = N(μ(x), diag exp(logvar(x))): flatten → [Linear + LeakyReLU] × 2 → Linear to (μ, logvar).

    Shapes: x (B, C, H, W) → μ, logvar (B, d). A pixel MLP keeps the encoder's
    capacity modest (App. I) so that the decoder stays the compared network.
    """

    def __init__(self, in_features: int, latent_dim: int, hidden: int):
        super().__init__()
        self.config = dict(in_features=in_features, latent_dim=latent_dim, hidden=hidden)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)  # (B, d) each
        return mu, logvar.clamp(*LOGVAR_RANGE)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²).

    Shapes: (B, d), (B, d) → (B,). Complexity O(B d).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


class VAE(LatentGenerator):
    """VAE on a NeuroSQL generator backbone; samples are G(z), z ~ N(0, I).

    Objective per image: ℓ(G(μ + σ ε), x) + β KL(q(z|x) ‖ N(0, I)), ε ~ N(0, I).
    ``codes_`` are the encoder means of the training images (``train_index_``
    order); :meth:`encode` returns the means of any images. The validation loss
    is the same objective on held-out images with a fixed ε.
    """

    kind = "vae"
    config_class = VAEConfig
    builders = {"generator": build_generator, "encoder": MLPEncoder}
    keeps_codes = True
    one_optimiser = True  # one objective over encoder and decoder

    def _setup(self, X: torch.Tensor) -> None:
        self.codes_ = None  # the encoder means of the training images, once training has ended
        self.networks_["generator"] = self._backbone()
        self.networks_["encoder"] = MLPEncoder(X[0].numel(), self.latent_dim, self.encoder_hidden).to(self.device_)

    def _objective(self, x: torch.Tensor, eps: torch.Tensor, networks: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction ℓ and KL, (B,) each, with the noise ε (B, d) given."""
        mu, logvar = networks["encoder"](x)
        z = mu + eps * (0.5 * logvar).exp()  # reparameterisation: (B, d)
        recon = loss_per_sample(networks["generator"](z), x, self.config.loss, self.config.chroma_weight)
        return recon, kl_to_standard_normal(mu, logvar)

    def _train_step(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        networks = {name: self._train_network(name) for name in self.networks_}
        x = self._augmented(x)
        recon, kl = self._objective(x, torch.randn(len(x), self.latent_dim, device=x.device), networks)
        loss = (recon + self.config.beta * kl).mean()
        self.training_.optimizations[0].step(loss)
        return {"train_loss": float(loss.detach()), "recon_loss": float(recon.detach().mean()), "kl": float(kl.detach().mean())}

    @torch.no_grad()
    def _validation_loss(self, X_val: torch.Tensor) -> float:
        for net in self.networks_.values():
            net.eval()
        eps = torch.randn(len(X_val), self.latent_dim, generator=torch.Generator().manual_seed(self.config.seed))
        total = 0.0
        for x, e in zip(X_val.split(512), eps.to(X_val.device).split(512)):
            recon, kl = self._objective(x, e, self.networks_)
            total += float((recon + self.config.beta * kl).sum())
        return total / len(X_val)

    def _after_fit(self, X: torch.Tensor) -> None:
        self.codes_ = self.encode(X).to(self.device_)  # (n, d)

    @torch.no_grad()
    def _means(self, X: torch.Tensor) -> torch.Tensor:
        encoder = self.networks_["encoder"].eval()
        return torch.cat([encoder(x)[0] for x in X.split(512)])  # (m, d)

    def encode(self, X, refine_steps: int = 0, lr: float = 0.05) -> torch.Tensor:
        """The encoder means μ(x) (m, d) on the CPU, optionally refined by
        ``refine_steps`` Adam steps on z minimising ℓ(G(z), x)."""
        self._check_fitted()
        check_refinement(refine_steps, lr)
        X = check_images(X, min_count=1).to(self.device_)
        z = self._means(X)
        if refine_steps > 0:
            z = optimise_latents(self.generator_, X, z, refine_steps, lr, self.config.loss,
                                   chroma_weight=self.config.chroma_weight)
        return z.cpu()

    def _extra_state(self) -> dict:
        return {} if self.codes_ is None else {"codes": self.codes_.cpu()}  # none until training ends

    def _load_extra(self, extra: dict) -> None:
        self.codes_ = extra["codes"].to(self.device_) if "codes" in extra else None
