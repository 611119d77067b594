"""Lattices against their defining formulas and their priors."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import qmc

from neurosql.errors import NeuroSQLError
from neurosql.core.lattice import LATTICES, Lattice, make_lattice

UNIVARIATE = ("quantile", "quantile_uniform")
SEEDED = ("sobol", "sobol_gaussian", "uniform")
# Prior of each kind as a per-coordinate CDF (None: spherical uniform, tested by radius).
MARGINAL = {"quantile": stats.norm.cdf, "quantile_uniform": stats.uniform.cdf, "sobol": stats.uniform.cdf,
            "sobol_gaussian": stats.norm.cdf, "uniform": stats.uniform.cdf, "ball": None,
            "ball_gaussian": stats.norm.cdf}
# KS distance of an n = 500 lattice's coordinates to the prior: an i.i.d. sample is
# only n^{-1/2}-close; a coordinate of the Hallin grid is n_S^{-1} ~ n^{-1/2}-close.
MARGINAL_TOLERANCE = {"uniform": 0.07, "ball_gaussian": 0.1}
RADIUS = {"ball": stats.uniform.cdf}  # the spherical uniform radius is U(0, 1)


def dims(kind):
    return (1,) if kind in UNIVARIATE else (1, 2, 3, 5)


def ks(sample, cdf):
    return stats.kstest(np.asarray(sample, dtype=np.float64), cdf).statistic


def radius_cdf(kind, d):
    return RADIUS.get(kind, stats.chi(d).cdf)


@pytest.mark.parametrize("kind", LATTICES)
def test_shape_dtype_finite_and_distinct(kind):
    for d in dims(kind):
        for n in (2, 3, 5, 11, 23, 64, 257):
            q = make_lattice(kind, n, d, seed=3).points
            assert q.shape == (n, d) and q.dtype == torch.float32
            assert torch.isfinite(q).all()
            assert torch.unique(q, dim=0).shape[0] == n, (kind, n, d)


def test_uniform_d1_distinct_where_float32_collides():
    # 20000 float32 draws in [0, 1) collide with near certainty (birthday bound).
    q = make_lattice("uniform", 20000, 1, seed=0).points
    assert torch.unique(q).numel() == 20000


@pytest.mark.parametrize("kind", LATTICES)
def test_deterministic_and_spec_round_trip(kind):
    d = dims(kind)[-1]
    lattice = make_lattice(kind, 50, d, seed=7)
    again = Lattice.from_spec(lattice.spec())
    assert lattice.spec() == {"kind": kind, "n": 50, "d": d, "seed": 7}
    assert again == lattice and torch.equal(again.points, lattice.points)
    assert torch.equal(make_lattice(kind, 50, d, seed=7).points, lattice.points)


@pytest.mark.parametrize("kind", SEEDED + ("ball", "ball_gaussian"))
def test_seed_changes_seeded_points(kind):
    d = 3  # ball directions are Sobol-based from d = 3
    assert not torch.equal(make_lattice(kind, 50, d, 0).points, make_lattice(kind, 50, d, 1).points)


def test_sobol_is_scipy_scrambled_sobol_prefix():
    ref = qmc.Sobol(4, scramble=True, rng=5).random(64)  # a power of two: no warning involved
    assert torch.equal(make_lattice("sobol", 64, 4, seed=5).points, torch.from_numpy(ref).float())
    assert torch.equal(make_lattice("sobol", 20, 4, seed=5).points, torch.from_numpy(ref[:20]).float())
    gauss = make_lattice("sobol_gaussian", 64, 4, seed=5).points
    assert torch.allclose(gauss, torch.from_numpy(stats.norm.ppf(np.maximum(ref, 2.0**-31))).float())


@pytest.mark.parametrize("n", [2, 9, 100])
def test_univariate_quantiles_are_paper_formula(n):
    p = np.arange(1, n + 1) / (n + 1)
    q = make_lattice("quantile", n, 1).points
    assert torch.equal(q, torch.from_numpy(stats.norm.ppf(p)[:, None]).float())
    assert torch.equal(make_lattice("quantile_uniform", n, 1).points, torch.from_numpy(p[:, None]).float())


@pytest.mark.parametrize("kind", [k for k in LATTICES if MARGINAL[k] is not None])
def test_lattice_marginals_match_prior(kind):
    n = 500
    for d in dims(kind):
        q = make_lattice(kind, n, d, seed=1).points.double().numpy()
        for j in range(d):
            fit, shifted = ks(q[:, j], MARGINAL[kind]), ks(q[:, j] - 1.0, MARGINAL[kind])
            assert fit < MARGINAL_TOLERANCE.get(kind, 0.01), (kind, d, j, fit)
            assert shifted > 3 * fit


@pytest.mark.parametrize("kind", ["ball", "ball_gaussian"])
@pytest.mark.parametrize("n, d, n_r, n_s, n_0", [
    (10, 2, 3, 3, 1), (23, 3, 4, 5, 3), (64, 2, 8, 8, 0), (65, 5, 8, 8, 1), (9, 1, 4, 2, 1), (8, 1, 4, 2, 0),
])
def test_ball_grid_structure(kind, n, d, n_r, n_s, n_0):
    q = make_lattice(kind, n, d, seed=2).points.double()
    radius = q.norm(dim=1).numpy()
    ring = np.arange(1, n_r + 1) / (n_r + 1)
    if kind == "ball_gaussian":
        ring = stats.chi(d).ppf(ring)
    # Each ring radius carries exactly n_S points; one centre point is the origin.
    for r in ring:
        assert np.isclose(radius, r, rtol=1e-6).sum() == n_s
    assert (radius == 0).sum() == min(n_0, 1)
    central = np.sort(radius)[:n_0]
    assert (central < ring[0]).all()
    on_ring = torch.from_numpy(np.isclose(radius[:, None], ring[None, :], rtol=1e-6).any(axis=1))
    directions = q[on_ring] / q[on_ring].norm(dim=1, keepdim=True)
    # Ring-major order; every ring's directions are centred (antipodal pairs, one
    # spare if n_S is odd) and, from d = 2, each ring has its own directions.
    per_ring = directions.reshape(n_r, n_s, d)
    assert (per_ring.mean(dim=1).norm(dim=1) <= 1 / n_s + 1e-6).all()
    if d >= 2:
        assert not torch.allclose(per_ring[1], per_ring[0], atol=1e-3)


@pytest.mark.parametrize("kind", ["ball", "ball_gaussian"])
@pytest.mark.parametrize("d", [2, 3, 8])
def test_ball_radii_and_directions_match_prior(kind, d):
    q = make_lattice(kind, 900, d, seed=0).points.double()
    radius = q.norm(dim=1).numpy()
    fit = ks(radius, radius_cdf(kind, d))
    assert fit < 0.05 and ks(radius * 1.2, radius_cdf(kind, d)) > 2 * fit
    if d == 3:  # Archimedes: a coordinate of a uniform direction on S^2 is U(-1, 1)
        u = (q[radius > 0, 0] / q[radius > 0].norm(dim=1)).numpy()
        assert ks(u, stats.uniform(-1, 2).cdf) < 0.1


@pytest.mark.parametrize("kind", ["sobol_gaussian", "ball_gaussian"])
@pytest.mark.parametrize("d", [2, 8, 16])
def test_gaussian_lattices_pass_ks_against_prior(kind, d):
    # n = 2000 lattice points tested as if they were an i.i.d. N(0, I_d) sample:
    # a shared set of ~sqrt(n) directions on every ball ring failed this at
    # d = 8, 16 (p ~ 1e-6, variances 0.78-1.21). The ring radii stop at the
    # chi_d quantile n_R / (n_R + 1), which costs the ball up to 5 % of variance.
    q = make_lattice(kind, 2000, d, seed=0).points.double().numpy()
    for j in range(d):
        assert stats.kstest(q[:, j], stats.norm.cdf).pvalue > 0.05, (j, d)
    assert stats.kstest(np.linalg.norm(q, axis=1), stats.chi(d).cdf).pvalue > 0.05
    variance = q.var(axis=0)
    assert np.abs(variance - 1).max() < 0.06 and variance.max() - variance.min() < 0.04, variance
    assert np.abs(np.corrcoef(q.T) - np.eye(d)).max() < 0.06


@pytest.mark.parametrize("kind", LATTICES)
def test_sample_prior_matches_prior(kind):
    d = dims(kind)[-1]
    lattice = make_lattice(kind, 16, d)
    z = lattice.sample_prior(4000, torch.Generator().manual_seed(0))
    assert z.shape == (4000, d) and z.dtype == torch.float32
    assert torch.equal(z, lattice.sample_prior(4000, torch.Generator().manual_seed(0)))
    z = z.double()
    bound = 0.03  # KS critical value at alpha = 0.01 for m = 4000 is 0.026
    if MARGINAL[kind] is not None:
        for j in range(d):
            assert ks(z[:, j], MARGINAL[kind]) < bound
            assert ks(z[:, j] + 0.2, MARGINAL[kind]) > bound
    if kind.startswith("ball"):
        assert ks(z.norm(dim=1), radius_cdf(kind, d)) < bound
        assert ks(z.norm(dim=1) * 1.1, radius_cdf(kind, d)) > bound
        if kind == "ball":  # the coordinate of the spherical uniform is not U, check directions
            assert (z.norm(dim=1) < 1).all()
            assert (z / z.norm(dim=1, keepdim=True)).mean(dim=0).norm() < 0.1


def test_sample_prior_spherical_uniform_direction_d3():
    z = make_lattice("ball", 16, 3).sample_prior(4000, torch.Generator().manual_seed(1)).double()
    assert ks(z[:, 2] / z.norm(dim=1), stats.uniform(-1, 2).cdf) < 0.03


@pytest.mark.parametrize("args, message", [
    (("gaussian", 10, 2), "unknown lattice kind 'gaussian'; use one of: quantile"),
    (("sobol", 1, 2), "n must be an integer >= 2"),
    (("sobol", 10, 0), "d must be an integer >= 1"),
    (("sobol", 10.0, 2), "n must be an integer"),
    (("sobol", 10, 2, -1), "seed must be an integer >= 0"),
    (("quantile", 10, 2), "univariate"),
    (("quantile_uniform", 10, 3), "univariate"),
    (("sobol_gaussian", 10, 30000), "d <= 21201"),
])
def test_bad_input_raises(args, message):
    with pytest.raises(NeuroSQLError, match=message):
        make_lattice(*args)


def test_bad_spec_and_sample_size_raise():
    with pytest.raises(NeuroSQLError, match="lacks"):
        Lattice.from_spec({"kind": "sobol", "n": 4})
    with pytest.raises(NeuroSQLError, match="samples"):
        make_lattice("sobol", 4, 2).sample_prior(-1)
