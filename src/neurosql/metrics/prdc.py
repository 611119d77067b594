"""Precision/recall (k-NN manifolds) and density/coverage of generated features."""
import torch

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_features


def feature_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (|a|, |b|) between feature rows, for the k-NN metrics."""
    # The direct (non-GEMM) form keeps self-distances exactly 0 and radii
    # comparisons free of cancellation error; the sets are at most a few thousand.
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _knn_radii(d_self: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point, from its (n, n) self-distances."""
    # The smallest entry of each row is the point itself (distance 0), hence rank k + 1.
    return torch.kthvalue(d_self, k + 1, dim=1).values  # (n,)


def prdc(f_real, f_fake, k_pr: int = 3, k_dc: int = 5) -> dict:
    """Precision, recall (Kynkäänniemi et al., 2019) and density, coverage (Naeem et al., 2020).

    With real features r_1..r_N, generated f_1..f_M, NND_k(x) the distance
    from x to its k-th nearest neighbour within its own set, and closed balls
    B(x, NND_k(x)):

        precision = 1/M sum_j 1[f_j in U_i B(r_i, NND_3(r_i))]
        recall    = 1/N sum_i 1[r_i in U_j B(f_j, NND_3(f_j))]
        density   = 1/(k M) sum_j sum_i 1[f_j in B(r_i, NND_5(r_i))]
        coverage  = 1/N sum_i 1[exists j: f_j in B(r_i, NND_5(r_i))]

    Precision/density measure fidelity (density is not capped at 1 and is
    robust to real outliers); recall/coverage measure diversity. Shapes:
    f_real (N, d), f_fake (M, d). Cost O((N + M)^2 d) time, O((N + M)^2) memory.
    """
    f_real, f_fake = check_features(f_real, "f_real"), check_features(f_fake, "f_fake")
    if f_real.shape[1] != f_fake.shape[1]:
        raise NeuroSQLError(f"feature sets differ in width: {f_real.shape[1]} vs {f_fake.shape[1]}")
    k_max = max(k_pr, k_dc)
    if min(k_pr, k_dc) < 1 or min(f_real.shape[0], f_fake.shape[0]) <= k_max:
        raise NeuroSQLError(
            f"prdc needs k >= 1 and more than k = {k_max} samples per set; "
            f"got {f_real.shape[0]} real, {f_fake.shape[0]} fake"
        )
    real, fake = torch.from_numpy(f_real), torch.from_numpy(f_fake)
    d_real, d_fake = feature_distances(real, real), feature_distances(fake, fake)  # (N, N), (M, M)
    d_cross = feature_distances(real, fake)  # (N, M)

    inside_real_pr = d_cross <= _knn_radii(d_real, k_pr)[:, None]  # (N, M): f_j in B(r_i)
    inside_fake_pr = d_cross <= _knn_radii(d_fake, k_pr)[None, :]  # (N, M): r_i in B(f_j)
    inside_real_dc = d_cross <= _knn_radii(d_real, k_dc)[:, None]
    return {
        "precision": inside_real_pr.any(dim=0).double().mean().item(),
        "recall": inside_fake_pr.any(dim=1).double().mean().item(),
        "density": inside_real_dc.sum().item() / (k_dc * fake.shape[0]),
        "coverage": inside_real_dc.any(dim=1).double().mean().item(),
    }
