"""Fréchet distance between Gaussian fits of feature sets, and the proxy FID."""
import warnings

import numpy as np
import scipy.linalg
import torch

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_features, check_images, check_same_image_shape
from neurosql.metrics.features import ProxyFeatureNet, ProxyFeatureNet3D, extract_features, matched_subsets


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared 2-Wasserstein distance between N(mu1, sigma1) and N(mu2, sigma2).

        d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})

    Shapes: mu (d,), sigma (d, d), symmetric PSD. Cost O(d^3) (Schur-based
    ``scipy.linalg.sqrtm``). When a covariance is singular (fewer samples than
    dimensions, or collinear features) the square root may come back
    non-finite; then ``eps * I`` is added to both covariances, the usual
    regularisation. Round-off can leave a tiny imaginary part on a real
    result; it is dropped, and a large one (a genuine failure) raises.
    Reference: Dowson & Landau (1982); Heusel et al. (2017), FID.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise NeuroSQLError(
            f"frechet_distance needs mu (d,) and sigma (d, d) for both sets; got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    with warnings.catch_warnings():
        # Rank-deficient covariances (n <= d samples) are routine here and the
        # Schur root stays accurate for them; a non-finite root is handled below.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(root).all():
            offset = eps * np.eye(d)
            root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        if np.abs(np.diagonal(root).imag).max() > 1e-3 * max(1.0, np.abs(np.diagonal(root).real).max()):
            raise NeuroSQLError("frechet_distance: matrix square root is far from real; covariances are not PSD")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def fid_from_features(f_real, f_fake) -> float:
    """Fréchet distance of the Gaussian fits (mean, unbiased covariance) of two feature sets (n, d), (m, d)."""
    f_real, f_fake = check_features(f_real, "f_real"), check_features(f_fake, "f_fake")
    if f_real.shape[1] != f_fake.shape[1]:
        raise NeuroSQLError(f"feature sets differ in width: {f_real.shape[1]} vs {f_fake.shape[1]}")
    return frechet_distance(
        f_real.mean(0), np.cov(f_real, rowvar=False), f_fake.mean(0), np.cov(f_fake, rowvar=False)
    )


def proxy_fid(real: torch.Tensor, fake: torch.Tensor, n: int = 2048, seed: int = 0,
              net: torch.nn.Module | None = None, batch_size: int = 256) -> dict:
    """Proxy FID (paper App. E): FID with the fixed random ``ProxyFeatureNet``.

    Uses ``m = min(n, len(real), len(fake))`` images of each set, chosen with
    ``seed`` (matched counts, as in the paper: 2048 by default). Pass ``net``
    to reuse a built extractor (or a domain one). Returns
    ``{"pfid": float, "n_real": m, "n_fake": m}``.
    """
    real, fake = check_images(real, "real", 2), check_images(fake, "fake", 2)
    check_same_image_shape(real, fake, "real and fake")
    real, fake = matched_subsets(real, fake, n, seed)
    net = ProxyFeatureNet() if net is None else net
    pfid = fid_from_features(extract_features(net, real, batch_size), extract_features(net, fake, batch_size))
    return {"pfid": pfid, "n_real": real.shape[0], "n_fake": fake.shape[0]}


def proxy_fid_3d(real: torch.Tensor, fake: torch.Tensor, seed: int = 0, batch_size: int = 32) -> float:
    """Fréchet distance between :class:`ProxyFeatureNet3D` features of two sets of volumes (n, C, D, H, W)."""
    if real.dim() != 5 or fake.dim() != 5:
        raise NeuroSQLError(f"proxy_fid_3d compares volumes (n, C, D, H, W); got {tuple(real.shape)} and {tuple(fake.shape)}")
    net = ProxyFeatureNet3D(seed)
    with torch.no_grad():
        embed = lambda v: torch.cat([net(b.double()) for b in v.split(batch_size)]).numpy()
        return fid_from_features(embed(real), embed(fake))
