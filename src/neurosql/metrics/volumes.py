"""Metrics of volumes (n, C, D, H, W): the 3-D proxy-FID of samples against real volumes and the
3-D SSIM of reconstructions, the numbers the 3-D phantom benchmark and the evaluation of volume runs report."""
import torch

from neurosql.core import images as core_images
from neurosql.core.losses3d import ssim
from neurosql.errors import NeuroSQLError
from neurosql.metrics.features import matched_subsets
from neurosql.metrics.fid import proxy_fid_3d

VOLUME_DEFINITIONS: dict[str, str] = {
    "pfid_3d": "Fréchet distance between Gaussian fits of real and generated volumes' features from a fixed random "
               "3-D convnet (App. E's proxy-FID recipe in 3-D; lower is better)",
    "recon_ssim_3d": "mean 3-D SSIM (7³ Gaussian window, σ = 0.9 voxel) between real volumes and their "
                     "reconstructions G(encode(x)) (higher is better)",
}


def check_volumes(x, name: str, min_count: int = 1) -> torch.Tensor:
    """Return ``x`` as a floating tensor (n, C, D, H, W) in [0, 1] or raise NeuroSQLError."""
    return core_images.check_images(
        x, name=name, dims=(5,), min_count=min_count, convert=False, from_numpy=True, value_range=True, slack=1e-3
    )


def reconstruction_ssim_3d(real: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean over i of the 3-D SSIM of real[i] and recon[i]; shapes (n, C, D, H, W) each. Cost O(n C D H W · max side)."""
    real, recon = check_volumes(real, "real"), check_volumes(recon, "recon")
    if real.shape != recon.shape:
        raise NeuroSQLError(f"real and recon must be paired volumes of one shape; got {tuple(real.shape)} and {tuple(recon.shape)}")
    with torch.no_grad():
        return ssim(real, recon.to(real.device, real.dtype)).double().mean().item()


def evaluate_volumes(real: torch.Tensor, fake: torch.Tensor, recon: torch.Tensor | None = None,
                     n: int = 2048, seed: int = 0) -> dict:
    """pfid_3d of ``m = min(n, len(real), len(fake))`` volumes of each set (chosen with ``seed``) and,
    given ``recon`` of ``real[:len(recon)]``, recon_ssim_3d."""
    real, fake = check_volumes(real, "real", 2), check_volumes(fake, "fake", 2)
    real_m, fake_m = matched_subsets(real, fake, n, seed)
    out = {"pfid_3d": proxy_fid_3d(real_m, fake_m, seed=seed), "n_real": len(real_m), "n_fake": len(fake_m)}
    if recon is not None:
        out.update(recon_ssim_3d=reconstruction_ssim_3d(real[: len(recon)], recon), n_recon=len(recon))
    return out
