"""Generative adversarial network baseline (paper App. I): the shared generator
against a four-layer CNN discriminator, non-saturating loss with BCE on logits.

Reference: Goodfellow et al., Generative Adversarial Nets (NeurIPS 2014), the
non-saturating generator loss; Radford et al., DCGAN (ICLR 2016), the
strided-convolution discriminator with LeakyReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import check_images
from .latent_generator import LatentGenerator
from .latents import check_refinement, optimise_latents
from ..core.generators import build_generator
from ..core.losses import pairwise_cost
from ..engine.config import LatentGeneratorConfig, option

POOL = 256  # fixed prior draws behind the validation loss and the starting codes of encode


@dataclass
class GANConfig(LatentGeneratorConfig):
    """GAN hyper-parameters; the budget fields are shared with every method."""

    disc_width: int = option(32, "discriminator width of the first layer (then 2×, 4×, 8×)", within="[1, inf)")
    encode_steps: int = option(10, "Adam steps on z per encode (a GAN has no encoder; see GAN.encode)",
                               within="[0, inf)")


class Discriminator(nn.Module):
    """D: image → real/fake logit. Four [Conv3x3 stride 2 pad 1 + LeakyReLU(0.2)] → Linear.

    Each convolution maps side s to ⌈s/2⌉ and sees every pixel, so any side
    works (28 → 14 → 7 → 4 → 2; 64 → 32 → 16 → 8 → 4). No normalisation: a
    BatchNorm would mix the statistics of the real and the generated batch.
    Shapes: (B, C, R, R) → (B, 8w, ⌈R/16⌉, ⌈R/16⌉) → (B,).
    """

    def __init__(self, resolution: int, channels: int, width: int = 32):
        super().__init__()
        self.config = dict(resolution=resolution, channels=channels, width=width)
        layers, c_in, side = [], channels, resolution
        for c_out in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, side = c_out, (side + 1) // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)  # (B,)


class GAN(LatentGenerator):
    """GAN on a NeuroSQL generator backbone; samples are G(z), z ~ N(0, I).

    Per batch: one discriminator step on BCE(D(x), 1) + BCE(D(G(z)), 0), then
    one generator step on BCE(D(G(z)), 1) (non-saturating). Both networks use
    the shared :class:`Optimization`; ``updates_`` counts generator steps and
    the log's ``time_generator`` covers both players' updates.
    A GAN has no validation loss of its own; early stopping uses the one
    NeuroSQL uses: each held-out image's ℓ to its nearest image among G(z) for
    a fixed seeded set of POOL codes. There are no training codes (no ``codes_``).
    """

    kind = "gan"
    config_class = GANConfig
    builders = {"generator": build_generator, "discriminator": Discriminator}

    def _setup(self, X: torch.Tensor) -> None:
        C, R = X.shape[1], X.shape[-1]
        self.networks_["generator"] = self._backbone()
        self.networks_["discriminator"] = Discriminator(R, C, self.disc_width).to(self.device_)

    def _train_step(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        G, D = self._train_network("generator"), self._train_network("discriminator")
        x = self._augmented(x)
        g_opt, d_opt = self.training_.optimizations
        real, fake_label = torch.ones(len(x), device=x.device), torch.zeros(len(x), device=x.device)
        fake = G(torch.randn(len(x), self.latent_dim, device=x.device))  # (b, C, H, W)
        # one call of D on real and fake images together (D has no batch statistics, so this equals
        # two calls), as a data-parallel D expects one forward per backward
        logits = D(torch.cat([x, fake.detach()]))  # (2b,)
        d_loss = F.binary_cross_entropy_with_logits(logits[: len(x)], real) + F.binary_cross_entropy_with_logits(
            logits[len(x):], fake_label
        )
        d_opt.step(d_loss)
        g_loss = F.binary_cross_entropy_with_logits(D(fake), real)
        g_opt.step(g_loss)
        return {"train_loss": float(g_loss.detach()), "d_loss": float(d_loss.detach())}

    def _pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed codes (POOL, d) and their images G(z) (POOL, C, H, W) on the model's device."""
        z = torch.randn(POOL, self.latent_dim, generator=torch.Generator().manual_seed(self.config.seed))
        return z.to(self.device_), self.decode(z, to_cpu=False)

    def _validation_loss(self, X_val: torch.Tensor) -> float:
        _, images = self._pool()
        cost = pairwise_cost(X_val, images, self.config.loss, chroma_weight=self.config.chroma_weight)
        return float(cost.min(dim=1).values.mean())

    def encode(self, X, refine_steps: int = 0, lr: float = 0.05) -> torch.Tensor:
        """Codes (m, d) on the CPU by latent optimisation, the GAN having no encoder:
        start from the nearest (under ℓ) of the POOL fixed prior draws, then take
        ``encode_steps + refine_steps`` Adam steps on z minimising ℓ(G(z), x)
        with the generator frozen (see :func:`neurosql.methods.latents.optimise_latents`)."""
        self._check_fitted()
        check_refinement(refine_steps, lr)
        X = check_images(X, min_count=1).to(self.device_)
        z, images = self._pool()
        cfg = self.config
        start = z[pairwise_cost(X, images, cfg.loss, chroma_weight=cfg.chroma_weight).argmin(dim=1)]  # (m, d)
        steps = cfg.encode_steps + refine_steps
        return optimise_latents(self.generator_, X, start, steps, lr, cfg.loss, chroma_weight=cfg.chroma_weight).cpu()
