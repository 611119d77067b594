"""Codes in and images out for every latent-generator method: G(z) in batches, and codes for
images by gradient descent on z with G frozen (the refinement of ``encode``, the GAN's encoder)."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from ..core.losses import CHROMA_WEIGHT, loss_per_sample
from ..engine.config import check_type
from ..errors import NeuroSQLError


def check_count(m) -> None:
    """A number of images to draw must be an integer >= 1."""
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1:
        raise NeuroSQLError(f"number of samples must be an integer >= 1, got {m!r}")


def check_refinement(refine_steps, lr) -> None:
    """What :meth:`LatentGenerator.encode` refines codes with: an integer number of steps >= 0, a rate > 0."""
    check_type("refine_steps", refine_steps, int)
    check_type("lr", lr, float)
    if refine_steps < 0 or lr <= 0:
        raise NeuroSQLError(f"encode needs refine_steps >= 0 and lr > 0, got {refine_steps} and {lr}")


@torch.no_grad()
def decode_in_batches(generator: nn.Module, z, device, batch_size: int = 512, to_cpu: bool = True) -> torch.Tensor:
    """G(z) in evaluation mode, ``batch_size`` codes at a time: (m, d) → (m, C, H, W)."""
    try:
        z = torch.as_tensor(z, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise NeuroSQLError(f"codes must be a numeric (m, {generator.latent_dim}) array or tensor, got {type(z).__name__}") from None
    if z.ndim != 2 or z.shape[1] != generator.latent_dim:
        raise NeuroSQLError(f"codes must have shape (m, {generator.latent_dim}), got {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise NeuroSQLError("codes contain NaN or Inf; pass finite codes")
    generator.eval()
    out = torch.cat([generator(chunk.to(device)) for chunk in z.split(batch_size)])
    return out.cpu() if to_cpu else out


def optimise_latents(
    generator: nn.Module, X: torch.Tensor, z: torch.Tensor, steps: int, lr: float, loss: str, batch_size: int = 256,
    chroma_weight: float = CHROMA_WEIGHT,
) -> torch.Tensor:
    """Codes for images by gradient descent on z with the generator frozen.

    Problem: min_z Σ_i ℓ(G(z_i), x_i), solved approximately by ``steps`` Adam
    steps from ``z``. Each image's problem is independent, so images are done
    in chunks of ``batch_size`` (bounded memory), each chunk with one summed loss.
    Shapes: X (m, C, H, W), z (m, d) → (m, d). Complexity: ``steps`` forward and
    backward passes of G over m images.
    """
    generator.eval()
    frozen = [p for p in generator.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    out = []
    try:
        for x, z0 in zip(X.split(batch_size), z.split(batch_size)):
            zc = z0.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([zc], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                loss_per_sample(generator(zc), x, loss, chroma_weight).sum().backward()
                opt.step()
            out.append(zc.detach())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return torch.cat(out)
