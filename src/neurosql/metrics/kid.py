"""Kernel distance (KID): unbiased MMD^2 with a cubic polynomial kernel, averaged over subsets."""
import numpy as np

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_features


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for all rows: (n, d), (m, d) -> (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of MMD^2 between the laws of the rows of x (n, d) and y (m, d).

        MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(nm) sum_{i, j} k(x_i, y_j)

    with the cubic polynomial kernel. Its expectation is exactly 0 when both
    samples come from the same law (it can be negative). Cost O((n + m)^2 d).
    Reference: Gretton et al. (2012), JMLR, eq. 3; Bińkowski et al. (2018), KID.
    """
    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kid(f_real, f_fake, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """Kernel Inception Distance on given features, with its Monte-Carlo standard error.

    Draws ``n_subsets`` pairs of subsets of size ``s = min(subset_size,
    max(2, floor(min(n, m) / 2)))`` (without replacement within a subset,
    from ``numpy.random.default_rng(seed)``) and averages ``mmd2_unbiased``
    over them, which bounds the O(s^2) memory. Subsets hold at most half the
    smaller set so that they differ from draw to draw: ``kid_se`` = sample
    std / sqrt(n_subsets) then measures the subset-sampling error of the
    average. It is None when it cannot be estimated (one subset, or sets of
    2 images, where every subset is the whole set). The usual 1,000-image
    subsets need at least 2,000 images per set.
    Shapes: f_real (n, d), f_fake (m, d). Cost O(n_subsets s^2 d).
    Reference: Bińkowski et al. (2018), "Demystifying MMD GANs", ICLR.
    Returns ``{"kid": float, "kid_se": float | None, "kid_subset_size": s}``.
    """
    f_real, f_fake = check_features(f_real, "f_real"), check_features(f_fake, "f_fake")
    if f_real.shape[1] != f_fake.shape[1]:
        raise NeuroSQLError(f"feature sets differ in width: {f_real.shape[1]} vs {f_fake.shape[1]}")
    if n_subsets < 1 or subset_size < 2:
        raise NeuroSQLError(f"kid needs n_subsets >= 1 and subset_size >= 2; got {n_subsets}, {subset_size}")
    smaller = min(f_real.shape[0], f_fake.shape[0])
    s = min(subset_size, max(2, smaller // 2))
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd2_unbiased(f_real[rng.choice(f_real.shape[0], s, replace=False)],
                      f_fake[rng.choice(f_fake.shape[0], s, replace=False)])
        for _ in range(n_subsets)
    ])
    se = float(values.std(ddof=1) / np.sqrt(n_subsets)) if n_subsets > 1 and s < smaller else None
    return {"kid": float(values.mean()), "kid_se": se, "kid_subset_size": s}
