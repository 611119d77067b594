"""Denoising diffusion baseline (paper §3.1, App. I): a U-Net ε-predictor whose
width is scaled to the compared generator's parameter count (±10%), a linear β
schedule with T = 1000, and deterministic strided (DDIM, η = 0) sampling.

The schedule functions know nothing of the network and the network
(:mod:`neurosql.methods.unet_denoiser`) nothing of the schedule.
References: Ho et al., Denoising Diffusion Probabilistic Models (NeurIPS 2020);
Song et al., Denoising Diffusion Implicit Models (ICLR 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import NeuroSQLError
from .base import Method
from .latents import check_count
from ..core.generators import count_parameters
from ..engine.config import BackboneConfig, option
from .unet_denoiser import UNetDenoiser

PARAM_TOLERANCE = 0.10  # paper §3.1: denoiser within ±10% of the compared generator's parameters
MAX_WIDTH = 4096  # search bound for the denoiser's base width


@dataclass
class DDPMConfig(BackboneConfig):
    """DDPM hyper-parameters. ``generator``, ``latent_dim`` and ``width`` name the
    compared generator, whose parameter count the denoiser matches."""

    timesteps: int = option(1000, "diffusion steps T", within="[2, inf)")
    beta_start: float = option(1e-4, "β_1 of the linear noise schedule", within="(0, 1)")
    beta_end: float = option(0.02, "β_T of the linear noise schedule", within="(0, 1)")
    sample_steps: int = option(100, "denoising steps when sampling (DDIM, evenly strided over T)", within="[1, inf)")
    denoiser_width: int = option(0, "U-Net base width; 0 = match the compared generator's parameter count",
                                 within="[0, inf)")

    def validate(self) -> None:
        super().validate()
        if self.sample_steps > self.timesteps:
            raise NeuroSQLError(f"sample-steps must be <= timesteps, got {self.sample_steps} and {self.timesteps}")
        if self.beta_start >= self.beta_end:
            raise NeuroSQLError(f"need beta-start < beta-end, got {self.beta_start} and {self.beta_end}")


# -------------------------------------------------------------- noise schedule
def linear_alpha_bars(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """ᾱ_t = Π_{s<=t} (1 − β_s) for β linear from β_1 to β_T (Ho et al. 2020, §4).

    Shapes: → (T,) float64, decreasing from 1 − β_1 towards 0.
    """
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
    """A draw of the forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), given its noise.

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε. Shapes: x0, eps (B, C, H, W), t (B,) → (B, C, H, W).
    """
    a = alpha_bars[t].to(x0.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def sampling_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` steps evenly strided from T − 1 down to 0 (distinct, descending)."""
    return torch.linspace(timesteps - 1, 0, steps).round().long().tolist()


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float) -> torch.Tensor:
    """One deterministic DDIM update (η = 0) from step t to an earlier step with ᾱ_prev.

    x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, clipped to the data range [−1, 1];
    ε̂ re-derived from the clipped x̂_0; x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̂
    (ᾱ_prev = 1 after the last step returns x̂_0). Shapes: (B, C, H, W) → same.
    """
    x0 = ((x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5).clamp(-1, 1)
    eps = (x_t - a_t**0.5 * x0) / (1 - a_t) ** 0.5
    return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps


# ---------------------------------------------------------- parameter matching
def _denoiser_parameters(channels: int, width: int) -> int:
    with torch.device("meta"):  # shapes only: counting allocates no weights
        return count_parameters(UNetDenoiser(channels, width))


def match_width(target: int, channels: int) -> int:
    """The base width w whose denoiser parameter count P(w) is nearest to ``target``.

    P is increasing in w (O(w²)), so a bisection finds the first w with
    P(w) >= target and the answer is it or w − 1. Raises NeuroSQLError when
    even the nearest is off by more than PARAM_TOLERANCE.
    Complexity: O(log MAX_WIDTH) network constructions on the meta device.
    """
    lo, hi = 2, MAX_WIDTH
    while lo < hi:
        mid = (lo + hi) // 2
        if _denoiser_parameters(channels, mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    width = min((w for w in (lo - 1, lo) if w >= 2), key=lambda w: abs(_denoiser_parameters(channels, w) - target))
    error = abs(_denoiser_parameters(channels, width) - target) / target
    if error > PARAM_TOLERANCE:
        raise NeuroSQLError(
            f"no denoiser width matches {target:,} parameters within ±{PARAM_TOLERANCE:.0%} (best width {width} is off "
            f"by {error:.0%}); set denoiser-width explicitly"
        )
    return width


class DDPM(Method):
    """DDPM baseline: ε-prediction on images mapped to [−1, 1], sampled by strided DDIM.

    Training minimises E_{x_0, t ~ U{0..T−1}, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖²;
    the validation loss is the same mean squared error on held-out images with
    a fixed seeded (t, ε) per image. ``param_match_`` records the compared
    generator's and the denoiser's parameter counts. There are no latent codes
    and no reconstruction (``supports_reconstruction = False``).
    """

    kind = "ddpm"
    config_class = DDPMConfig
    builders = {"denoiser": UNetDenoiser}
    supports_reconstruction = False
    compared_network = "denoiser"

    def _setup(self, X: torch.Tensor) -> None:
        cfg, C, R = self.config, X.shape[1], X.shape[-1]
        with torch.device("meta"):
            target = count_parameters(
                cfg.backbone(R, C)
            )
        width = cfg.denoiser_width or match_width(target, C)
        self.networks_["denoiser"] = UNetDenoiser(C, width).to(self.device_)
        n = count_parameters(self.networks_["denoiser"])
        self.param_match_ = {
            "generator": cfg.generator,
            "generator_parameters": target,
            "denoiser_width": width,
            "denoiser_parameters": n,
            "ratio": n / target,
        }

    @property
    def _alpha_bars(self) -> torch.Tensor:
        cfg = self.config
        return linear_alpha_bars(cfg.timesteps, cfg.beta_start, cfg.beta_end).to(self.device_, torch.float32)

    def _noise_loss(self, denoiser, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
        """Per-image ‖ε − ε_θ(x_t, t)‖² / (C H W) for images x in [0, 1]: (B,)."""
        x_t = q_sample(2 * x - 1, t, eps, alpha_bars)
        return (denoiser(x_t, t) - eps).pow(2).flatten(1).mean(dim=1)

    def _train_step(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        x = self._augmented(x)
        t = torch.randint(0, self.config.timesteps, (len(x),), device=x.device)
        loss = self._noise_loss(self._train_network("denoiser"), x, t, torch.randn_like(x), self._alpha_bars).mean()
        self.training_.optimizations[0].step(loss)
        return {"train_loss": float(loss.detach())}

    @torch.no_grad()
    def _validation_loss(self, X_val: torch.Tensor) -> float:
        self.networks_["denoiser"].eval()
        generator = torch.Generator().manual_seed(self.config.seed)
        t = torch.randint(0, self.config.timesteps, (len(X_val),), generator=generator).to(X_val.device)
        eps = torch.randn(X_val.shape, generator=generator).to(X_val.device)
        alpha_bars = self._alpha_bars
        total = sum(
            float(self._noise_loss(self.networks_["denoiser"], x, s, e, alpha_bars).sum())
            for x, s, e in zip(X_val.split(256), t.split(256), eps.split(256))
        )
        return total / len(X_val)

    @torch.no_grad()
    def sample(self, m: int, seed: int | None = None, batch_size: int = 256) -> torch.Tensor:
        """m images (m, C, H, W) in [0, 1] on the CPU: x_T ~ N(0, I) (seeded), then
        ``sample_steps`` DDIM steps; deterministic given the seed."""
        self._check_fitted()
        check_count(m)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        noise = torch.randn((m, *self.image_shape_), generator=generator)  # x_T: (m, C, H, W)
        denoiser = self.networks_["denoiser"].eval()
        alpha_bars = self._alpha_bars.cpu().tolist()
        steps = sampling_timesteps(self.config.timesteps, self.config.sample_steps)
        out = []
        for x in noise.split(batch_size):
            x = x.to(self.device_)
            for i, t in enumerate(steps):
                a_prev = alpha_bars[steps[i + 1]] if i + 1 < len(steps) else 1.0
                eps = denoiser(x, torch.full((len(x),), t, device=self.device_))
                x = ddim_step(x, eps, alpha_bars[t], a_prev)
            out.append(((x + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(out)

    def reconstruct(self, X=None, refine_steps: int = 0) -> torch.Tensor:
        raise NeuroSQLError("a DDPM has no latent codes to reconstruct from; skip reconstruction metrics for it")

    def _extra_state(self) -> dict:
        return {"param_match": self.param_match_}

    def _load_extra(self, extra: dict) -> None:
        self.param_match_ = extra["param_match"]
