"""Methods whose images are G(z) for codes z: NeuroSQL, the VAE and the GAN share the backbone,
decoding in batches, prior draws, sampling and reconstruction."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import NeuroSQLError
from .base import Method
from .latents import check_count, decode_in_batches


class LatentGenerator(Method):
    """A method whose images are G(z) for codes z from a prior: NeuroSQL, the VAE and the GAN.

    ``networks_["generator"]`` is a backbone from :func:`neurosql.core.generators.build_generator`.
    """

    prior = "normal"  # the latent prior's name, as in ``Lattice.prior``

    @property
    def generator_(self) -> nn.Module:
        self._check_fitted()
        return self.networks_["generator"]

    def _backbone(self) -> nn.Module:
        """The configured generator for this data, on the model's device."""
        shape = self.image_shape_
        return self.config.backbone(shape[-1], shape[0], volume=len(shape) == 4).to(self.device_)

    def _prior_sample(self, m: int, generator: torch.Generator | None) -> torch.Tensor:
        """m codes (m, d) from the prior, on the CPU."""
        return torch.randn(m, self.config.latent_dim, generator=generator)

    @torch.no_grad()
    def decode(self, z, batch_size: int = 512, to_cpu: bool = True) -> torch.Tensor:
        """G(z) in evaluation mode, in batches: (m, d) codes → (m, C, H, W) images."""
        self._check_fitted()
        return decode_in_batches(self.generator_, z, self.device_, batch_size, to_cpu)

    def sample_latent(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m codes z (m, d) drawn from the prior, on the CPU; a seed makes them reproducible."""
        self._check_fitted()
        check_count(m)
        return self._prior_sample(m, torch.Generator().manual_seed(seed) if seed is not None else None)

    def sample(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m new images G(z), z from the prior: (m, C, H, W) in [0, 1] on the CPU."""
        return self.decode(self.sample_latent(m, seed))

    def encode(self, X, refine_steps: int = 0, lr: float = 0.05) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, X=None, refine_steps: int = 0) -> torch.Tensor:
        """G(codes_) for the training images (X=None, in ``train_index_`` order), or G(encode(X))."""
        self._check_fitted()
        if X is None and not self.has_codes:
            raise NeuroSQLError(f"a {self.kind} keeps no training codes; pass the images to reconstruct")
        return self.decode(self.codes_ if X is None else self.encode(X, refine_steps))
