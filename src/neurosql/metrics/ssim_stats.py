"""SSIM statistics of generated images: paired, sampled-pairs (paper App. E) and nearest-real."""
import numpy as np
import torch

from neurosql.errors import NeuroSQLError
from neurosql.core.losses import pairwise_cost, ssim
from neurosql.metrics._validate import check_images, check_same_image_shape


def _checked(real, fake, names: str):
    real, fake = check_images(real, names.split()[0]), check_images(fake, names.split()[-1])
    check_same_image_shape(real, fake, names)
    return real, fake


def reconstruction_ssim(real: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean over i of SSIM(real[i], recon[i]); shapes (n, C, H, W) each. Cost O(n C H W)."""
    real, recon = _checked(real, recon, "real and recon")
    if real.shape[0] != recon.shape[0]:
        raise NeuroSQLError(f"real and recon must be paired; got {real.shape[0]} and {recon.shape[0]} images")
    with torch.no_grad():
        return ssim(real, recon.to(real.device, real.dtype)).double().mean().item()


def random_pairs(n_real: int, n_fake: int, n_pairs: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``p = min(n_pairs, n_real, n_fake)`` random (real, generated) pairs.

    Each side is drawn without replacement from ``numpy.random.default_rng(seed)``
    (real first), so the pairs depend only on the seed. The paper (App. E)
    scores SSIM and LPIPS over the same 50 such pairs. Returns two (p,) arrays.
    """
    if n_pairs < 1:
        raise NeuroSQLError(f"n_pairs must be >= 1; got {n_pairs}")
    p = min(n_pairs, n_real, n_fake)
    rng = np.random.default_rng(seed)
    return rng.choice(n_real, p, replace=False), rng.choice(n_fake, p, replace=False)


def sampled_pairs_ssim(real: torch.Tensor, fake: torch.Tensor, n_pairs: int = 50, seed: int = 0) -> float:
    """Mean SSIM over ``random_pairs`` of real and generated images (paper App. E protocol).

    Generated images are unpaired samples, so this is a coarse similarity
    level between the two sets, not a reconstruction score.
    """
    real, fake = _checked(real, fake, "real and fake")
    i, j = random_pairs(real.shape[0], fake.shape[0], n_pairs, seed)
    return reconstruction_ssim(real[torch.from_numpy(i)], fake[torch.from_numpy(j)])


def nearest_real_ssim(real: torch.Tensor, fake: torch.Tensor, chunk_size: int | None = None) -> float:
    """Mean over generated images of their highest SSIM to any real image.

        (1/M) sum_j max_i SSIM(fake_j, real_i)

    Near 1 means generated images copy training images (memorisation); far
    below ``reconstruction_ssim`` of a good model means they are new. Shapes:
    real (N, C, H, W), fake (M, C, H, W). Cost O(N M C H W * 121) through
    ``losses.pairwise_cost`` (the (M, N) matrix of 1 - SSIM).
    """
    real, fake = _checked(real, fake, "real and fake")
    cost = pairwise_cost(fake, real, loss="ssim", chunk_size=chunk_size)  # (M, N) of 1 - SSIM
    return (1 - cost.min(dim=1).values).double().mean().item()
