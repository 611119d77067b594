"""Volume generators G_θ: R^d → [0, 1]^(C×R×R×R), chosen when the data are (n, C, D, H, W).

``convnet`` is the only 3-D backbone so far: the 2-D ConvNet with every
layer made volumetric. ``build_generator(name, ..., volume=True)`` (in
:mod:`neurosql.core.generators`) lands here, and each module's ``config`` carries
``volume=True`` so checkpoints rebuild the 3-D network.
"""

import math

import torch
from torch import nn

from ..errors import NeuroSQLError
from .generators import ConvNet, _Generator, _halving


class ConvNet3D(_Generator):
    """z → Linear → (w, s0, s0, s0) → k × [ConvT 4³/2 + BN + ReLU] → Conv 3³ → sigmoid.

    Shapes: z (B, d) → (B, w, s0³) → ... → (B, w/2^k, R³) → (B, C, R, R, R), with
    R = s0·2^k, s0 = 7 when 7 divides R (28 = 7·4) and 4 otherwise (16, 32, 64).
    Widths halve at each stage, floored at MIN_WIDTH. Cost per volume
    O(d·w·s0³ + Σ_i w_i·w_{i+1}·8·(s0 2^(i+1))³).
    """

    NAME = "convnet"
    DEFAULT_WIDTH = 64  # 32³, d = 16: 0.25 M parameters; a volume has 32× the voxels of a 32² image
    RULE = "4·2^k or 7·2^k voxels per side for k >= 1 (8, 14, 16, 28, 32, 56, 64, ...)"

    def __init__(self, latent_dim: int, resolution: int = 32, channels: int = 1, width: int | None = None):
        super().__init__(latent_dim, resolution, channels, width, volume=True)
        d, R, C = self.latent_dim, self.resolution, self.channels
        s0 = ConvNet._start_size(R)
        widths = _halving(self.width, int(math.log2(R // s0)) + 1)
        self.project = nn.Sequential(
            nn.Linear(d, widths[0] * s0**3, bias=False),
            nn.Unflatten(1, (widths[0], s0, s0, s0)),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        for c_in, c_out in zip(widths, widths[1:]):
            stages += [nn.ConvTranspose3d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU()]
        self.upsample = nn.Sequential(*stages)
        self.head = nn.Conv3d(widths[-1], C, 3, padding=1)

    fits = staticmethod(ConvNet.fits)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        h = self.upsample(self.project(z))  # (B, w_k, R, R, R)
        return torch.sigmoid(self.head(h))  # (B, C, R, R, R)


VOLUME_GENERATORS = {ConvNet3D.NAME: ConvNet3D}


def build_volume_generator(name: str, latent_dim: int, resolution: int, channels: int, width: int | None,
                           **options) -> nn.Module:
    """A fresh 3-D generator ``name`` mapping (B, latent_dim) codes to (B, channels, R, R, R)."""
    if name not in VOLUME_GENERATORS:
        raise NeuroSQLError(f"generator {name!r} has no 3-D version; for volumes use {', '.join(VOLUME_GENERATORS)}")
    if options:
        raise NeuroSQLError(f"unknown option(s) {', '.join(sorted(options))} for the 3-D generator {name!r}")
    return VOLUME_GENERATORS[name](latent_dim, resolution, channels, width)
