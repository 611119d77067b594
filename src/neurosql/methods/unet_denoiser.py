"""The DDPM's noise-prediction network ε_θ(x_t, t): a small time-conditioned U-Net.

It knows nothing of the noise schedule (see :mod:`neurosql.methods.ddpm`).
Its base width is what the DDPM baseline scales to match the parameter count
of a compared generator (paper §3.1: within ±10%).
References: Ho et al., DDPM (NeurIPS 2020), the time-conditioned residual
U-Net; Ronneberger et al., U-Net (2015); Vaswani et al. (2017), the sinusoidal
embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MULTIPLIERS = (1, 2, 2)  # widths per level relative to the base width: sides R, R/2, R/4


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features [sin(t ω_k), cos(t ω_k)], ω_k = 10000^(−k/(dim/2)).

    Shapes: t (B,) integer or float steps → (B, 2·⌊dim/2⌋).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    # any base width is allowed (the parameter match needs fine steps): use the largest group count <= 8 dividing it
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → Conv3x3, + Linear(time embedding), GroupNorm → SiLU → Conv3x3, plus a (1x1) skip.

    (B, c_in, s, s), emb (B, e) → (B, c_out, s, s).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.first = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time = nn.Linear(emb_dim, c_out)
        self.second = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        out = self.first(h) + self.time(emb)[:, :, None, None]
        return self.second(out) + self.skip(h)


class UNetDenoiser(nn.Module):
    """ε_θ(x_t, t): three levels (sides R, ⌈R/2⌉, ⌈R/4⌉, widths w·MULTIPLIERS) with skips.

    Down: Conv3x3 in, a ResBlock per level with 2x2 average pooling (ceil mode,
    so odd sides such as 7 work) between levels; a middle ResBlock; up: nearest
    upsampling to the skip's side, concatenation, a ResBlock back to that level's
    width; GroupNorm → SiLU → Conv3x3 out. The step t enters every ResBlock
    through a sinusoidal embedding and a two-layer MLP (width 4w).
    Shapes: x_t (B, C, R, R), t (B,) → (B, C, R, R).
    Cost per image O(w² R²) multiply-adds; parameters O(w²).
    """

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.config = dict(channels=channels, width=width)
        widths = [width * m for m in MULTIPLIERS]
        emb = 4 * width
        self.features = 2 * (width // 2)  # sinusoidal features of t
        self.time_mlp = nn.Sequential(nn.Linear(self.features, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList(ResBlock(c_in, c_out, emb) for c_in, c_out in zip([width] + widths[:-1], widths))
        self.middle = ResBlock(widths[-1], widths[-1], emb)
        ups, c = [], widths[-1]
        for c_skip in reversed(widths):
            ups.append(ResBlock(c + c_skip, c_skip, emb))
            c = c_skip
        self.up = nn.ModuleList(ups)
        self.out = nn.Sequential(_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.features))  # (B, 4w)
        h = self.inp(x)  # (B, w, R, R)
        skips = []
        for level, block in enumerate(self.down):
            if level:
                h = F.avg_pool2d(h, 2, ceil_mode=True)
            h = block(h, emb)  # (B, w_l, R_l, R_l)
            skips.append(h)
        h = self.middle(h, emb)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)  # (B, w_l, R_l, R_l)
        return self.out(h)  # (B, C, R, R)
