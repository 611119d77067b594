"""Augmentations of the training images in generator steps (paper App. I lists them among the
per-method settings; all are off by default, as in our reference runs).

They apply only where a method's networks learn from images — NeuroSQL's regression target,
the VAE's input and target, the GAN's real batch, the DDPM's x₀ — and never to NeuroSQL's
cost matrix, so the assignment always sees the data as they are. For NeuroSQL an image's code
then has to produce every variant of it, which blurs G: use them for the baselines, or with care.
"""

from __future__ import annotations

import torch

from ..errors import NeuroSQLError

AUGMENTATIONS = ("hflip", "shift")
MAX_SHIFT = 2  # pixels (voxels) a shift moves an image along each spatial axis, at most


def parse_augmentations(text: str) -> tuple[str, ...]:
    """'hflip,shift' → ('hflip', 'shift'); '' → (); an unknown or empty name ('hflip,') is a NeuroSQLError."""
    if not text.strip():
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if "" in names:
        raise NeuroSQLError(f"--augment {text!r} has an empty name; list names separated by single commas, "
                            f"e.g. {','.join(AUGMENTATIONS)}")
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise NeuroSQLError(f"unknown augmentation '{unknown[0]}'; choose from {', '.join(AUGMENTATIONS)} "
                            "(comma-separated), or leave --augment empty")
    return names


def augment(x: torch.Tensor, names: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """A new batch: each image mirrored left-right with probability ½ ("hflip") and/or moved by an
    integer offset in [−2, 2] along each spatial axis with its edges repeated ("shift").

    Shapes: (b, C, H, W) or (b, C, D, H, W) → the same. Draws come from ``generator`` (CPU), so a
    seeded epoch augments the same way every time.
    """
    b, spatial = len(x), x.dim() - 2
    if "hflip" in names:
        flip = torch.rand(b, generator=generator) < 0.5
        x = torch.where(flip.to(x.device).view(b, *[1] * (x.dim() - 1)), x.flip(-1), x)
    if "shift" in names:
        offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (b, spatial), generator=generator).tolist()
        pad = [MAX_SHIFT] * (2 * spatial)
        padded = torch.nn.functional.pad(x, pad, mode="replicate")  # (b, C, H + 4, W + 4)
        sides = x.shape[2:]
        x = torch.stack([
            padded[(i, slice(None), *[slice(o, o + s) for o, s in zip(offsets[i], sides)])] for i in range(b)
        ])
    return x
