"""Quantile lattices Q_1..Q_n of a latent prior, and draws from that prior.

NeuroSQL gives every training image one point of a fixed lattice of n
quantiles of the prior P_Z on R^d (paper §2.2-2.3) and generates new images
from fresh prior draws, so each lattice kind comes with the prior it
discretises:

=================  ==========================================  ===================
kind               points Q (n, d)                             prior
=================  ==========================================  ===================
quantile           Phi^{-1}(i/(n+1)), d = 1 (paper §2.2)       N(0, 1)
quantile_uniform   i/(n+1), d = 1                              U(0, 1)
sobol              scrambled Sobol points in [0, 1]^d          U[0, 1]^d
sobol_gaussian     Phi^{-1} of the Sobol points (App. I)       N(0, I_d)
uniform            i.i.d. U[0, 1]^d draws                      U[0, 1]^d
ball               Hallin et al. (2021) center-outward grid    spherical uniform
ball_gaussian      ball grid with radii r -> chi_d^{-1}(r)     N(0, I_d)
=================  ==========================================  ===================

The spherical uniform distribution on the open unit ball is that of R * S
with R ~ U(0, 1) independent of S uniform on the sphere S^{d-1} (Hallin et
al., 2021); it is the reference measure of center-outward quantiles.

References: Hallin, del Barrio, Cuesta-Albertos and Matrán (2021),
"Distribution and quantile functions, ranks and signs in dimension d",
Ann. Statist. 49; Sobol' (1967) with Owen's scrambling via scipy.stats.qmc.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from scipy.stats import qmc

from neurosql.errors import NeuroSQLError

LATTICES: tuple[str, ...] = (
    "quantile",
    "quantile_uniform",
    "sobol",
    "sobol_gaussian",
    "uniform",
    "ball",
    "ball_gaussian",
)

_UNIVARIATE = ("quantile", "quantile_uniform")
_SOBOL_BITS = 30  # scipy's default precision: Sobol points are multiples of 2**-30
_PRIOR = {
    "quantile": "normal",
    "quantile_uniform": "uniform",
    "sobol": "uniform",
    "sobol_gaussian": "normal",
    "uniform": "uniform",
    "ball": "spherical_uniform",
    "ball_gaussian": "normal",
}


def _sobol(n: int, d: int, seed: int) -> np.ndarray:
    """First n points of the seeded scrambled Sobol sequence in [0, 1)^d, (n, d) float64."""
    sampler = qmc.Sobol(d, scramble=True, bits=_SOBOL_BITS, rng=seed)
    with warnings.catch_warnings():
        # Lattice sizes follow the data set size, rarely a power of two; a
        # prefix of a scrambled Sobol sequence is still low-discrepancy, it
        # only loses the exact (t, m, s)-net balance scipy warns about.
        warnings.filterwarnings("ignore", message="The balance properties", category=UserWarning)
        return sampler.random(n)


def _open_unit(u: np.ndarray) -> np.ndarray:
    """Move exact 0s of Sobol points to half a grid cell so Phi^{-1} stays finite.

    Points are multiples of 2**-bits in [0, 1), so 0 is the only value with an
    infinite normal quantile, and 2**-(bits+1) is taken by no other point:
    distinct points stay distinct.
    """
    return np.maximum(u, 2.0 ** -(_SOBOL_BITS + 1))


def _ring_directions(n_r: int, n_s: int, d: int, seed: int) -> np.ndarray:
    """n_S distinct low-discrepancy unit vectors on S^{d-1} for each of n_R rings, (n_R, n_S, d) float64.

    d = 1: (+1, -1) on every ring. d = 2: n_S equally spaced angles, ring j
    turned by frac(j / golden ratio) of the spacing, so the rings fill each
    other's gaps. d >= 3: ring j takes the j-th block of ceil(n_S/2) points
    of one scrambled Sobol sequence, pushed to N(0, I_d) by Phi^{-1} and
    normalised (uniform on the sphere, as the standard Gaussian is rotation
    invariant), followed by their antipodes. Every ring is centred (to within
    one vector when n_S is odd) and the union of the rings' directions is a
    Sobol prefix of about n / 2 points and its mirror image: sharing one set of
    ~sqrt(n) directions across rings instead leaves coordinate variances
    0.8-1.2 and per-coordinate KS p ~ 1e-6 at n = 2000, d = 16.
    """
    if d == 1:
        return np.tile([[[1.0], [-1.0]]], (n_r, 1, 1))[:, :n_s]
    if d == 2:
        turn = (np.arange(n_r)[:, None] * (math.sqrt(5.0) - 1.0) / 2.0) % 1.0  # (n_R, 1)
        angle = 2.0 * math.pi * (np.arange(n_s)[None, :] + turn) / n_s  # (n_R, n_S)
        return np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    half = (n_s + 1) // 2
    g = stats.norm.ppf(_open_unit(_sobol(n_r * half, d, seed)))  # (n_R * half, d)
    g = (g / np.linalg.norm(g, axis=1, keepdims=True)).reshape(n_r, half, d)
    return np.concatenate([g, -g], axis=1)[:, :n_s]


def _ball_factors(n: int, d: int) -> tuple[int, int, int]:
    """Hallin's factorisation n = n_R * n_S + n_0 with n_R ~ n_S ~ sqrt(n).

    For d >= 2, n_R = floor(sqrt n) and n_S = floor(n / n_R) >= n_R give
    n_0 < n_R = min(n_R, n_S). On the line there are only two directions, so
    n_S = 2 and n_0 = n mod 2 (the centre of an odd sample).
    """
    if d == 1:
        return n // 2, 2, n % 2
    n_r = math.isqrt(n)
    n_s = n // n_r
    return n_r, n_s, n - n_r * n_s


def _ball(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Center-outward regular grid of the unit ball as (radii (n,), directions (n, d)).

    Grid (Hallin et al., 2021): n_R radii j / (n_R + 1), j = 1..n_R,
    times n_S directions per ring, plus n_0 central points. Hallin uses the
    same directions on every ring; the paper (§2.3) asks only for a
    low-discrepancy grid converging weakly to the spherical uniform, and
    per-ring directions (``_ring_directions``) converge much faster in d >= 3. Hallin stacks the n_0
    central points at the origin; lattice codes must be distinct, so the
    origin is used once and the other n_0 - 1 points go on an inner ring of
    radius 1 / (2 (n_R + 1)) with their own n_0 - 1 spread directions: they
    stay inside the first ring, where Hallin's central mass sits.
    """
    n_r, n_s, n_0 = _ball_factors(n, d)
    ring_radii = np.arange(1, n_r + 1) / (n_r + 1)  # (n_R,)
    radii = [np.repeat(ring_radii, n_s)]  # ring-major: (n_R * n_S,)
    directions = [_ring_directions(n_r, n_s, d, seed).reshape(-1, d)]  # (n_R * n_S, d)
    if n_0 >= 1:
        radii.insert(0, np.zeros(1))
        directions.insert(0, np.eye(1, d))  # any unit vector: the radius is 0
    if n_0 >= 2:
        radii.insert(1, np.full(n_0 - 1, 0.5 / (n_r + 1)))
        directions.insert(1, _ring_directions(1, n_0 - 1, d, seed)[0])
    return np.concatenate(radii), np.concatenate(directions)


def _uniform(n: int, d: int, seed: int) -> np.ndarray:
    """n i.i.d. U[0, 1)^d points, distinct after rounding to float32, (n, d) float64.

    float32 has about 2**24 values per unit, so for d = 1 and n in the
    thousands two draws collide with sizeable probability; colliding rows are
    redrawn, i.e. the lattice is a sample conditioned on distinct codes.
    """
    rng = np.random.default_rng(seed)
    u = rng.random((n, d)).astype(np.float32)
    while True:
        _, first = np.unique(u, axis=0, return_index=True)
        repeated = np.setdiff1d(np.arange(n), first)
        if repeated.size == 0:
            return u.astype(np.float64)
        u[repeated] = rng.random((repeated.size, d)).astype(np.float32)


def _build(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    """The (n, d) float64 points of a lattice kind."""
    if kind in _UNIVARIATE:
        p = np.arange(1, n + 1)[:, None] / (n + 1)  # (n, 1)
        return stats.norm.ppf(p) if kind == "quantile" else p
    if kind == "sobol":
        return _sobol(n, d, seed)
    if kind == "sobol_gaussian":
        return stats.norm.ppf(_open_unit(_sobol(n, d, seed)))
    if kind == "uniform":
        return _uniform(n, d, seed)
    radii, directions = _ball(n, d, seed)
    if kind == "ball_gaussian":
        # F_pm^{-1} of N(0, I_d) keeps the direction and sends the radius
        # through the chi_d quantile, so the grid's radii are chi_d quantiles.
        radii = stats.chi(d).ppf(radii)
    return radii[:, None] * directions


def _check(kind: object, n: object, d: object, seed: object) -> None:
    if kind not in LATTICES:
        raise NeuroSQLError(f"unknown lattice kind {kind!r}; use one of: {', '.join(LATTICES)}")
    for name, value, low in (("n", n, 2), ("d", d, 1), ("seed", seed, 0)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise NeuroSQLError(f"lattice {name} must be an integer >= {low}, got {value!r}")
    if kind in _UNIVARIATE and d != 1:
        raise NeuroSQLError(f"lattice kind {kind!r} is univariate (d = 1), got d = {d}; "
                            "use 'sobol_gaussian' or 'ball_gaussian' for d > 1")
    if kind in ("sobol", "sobol_gaussian", "ball", "ball_gaussian") and d > qmc.Sobol.MAXDIM:
        raise NeuroSQLError(f"lattice kind {kind!r} supports d <= {qmc.Sobol.MAXDIM}, got d = {d}; "
                            "use a smaller latent dimension or kind 'uniform'")


@dataclass(frozen=True)
class Lattice:
    """The quantiles Q_1..Q_n of a prior on R^d, rebuilt exactly from (kind, n, d, seed).

    ``points`` is (n, d) float32 on the CPU with no two rows equal;
    ``sample_prior`` draws from the prior the lattice discretises.
    """

    kind: str
    n: int
    d: int
    seed: int = 0
    points: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self.kind, self.n, self.d, self.seed)
        for name in ("n", "d", "seed"):  # numpy integers -> int, for specs and hashing
            object.__setattr__(self, name, int(getattr(self, name)))
        points = torch.from_numpy(_build(self.kind, self.n, self.d, self.seed)).float()
        object.__setattr__(self, "points", points)  # (n, d)

    @property
    def prior(self) -> str:
        """The prior's name: "normal", "uniform" (on [0, 1]^d) or "spherical_uniform"."""
        return _PRIOR[self.kind]

    def sample_prior(self, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """m i.i.d. draws from the lattice's prior, (m, d) float32 on the generator's device."""
        if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 0:
            raise NeuroSQLError(f"number of prior samples must be an integer >= 0, got {m!r}")
        device = generator.device if generator is not None else torch.device("cpu")
        shape = (int(m), self.d)
        if self.prior == "normal":
            return torch.randn(shape, generator=generator, device=device)
        if self.prior == "uniform":
            return torch.rand(shape, generator=generator, device=device)
        g = torch.randn(shape, generator=generator, device=device)
        radius = torch.rand((int(m), 1), generator=generator, device=device)
        # A Gaussian draw of norm 0 has probability 0 but would give NaN.
        return radius * g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)

    def redrawn(self, seed: int) -> Lattice:
        """A lattice of the same kind and size drawn with another seed (a fresh scrambling of the Sobol
        points, fresh ball directions or uniform draws); the univariate grids have no seed and stay."""
        return Lattice(self.kind, self.n, self.d, seed)

    def spec(self) -> dict:
        """The JSON-ready parameters that rebuild this lattice exactly."""
        return {"kind": self.kind, "n": self.n, "d": self.d, "seed": self.seed}

    @classmethod
    def from_spec(cls, spec: dict) -> Lattice:
        """Inverse of ``spec``."""
        missing = {"kind", "n", "d", "seed"} - set(spec)
        if missing:
            raise NeuroSQLError(f"lattice spec lacks {sorted(missing)}; pass the dict from Lattice.spec()")
        return cls(spec["kind"], spec["n"], spec["d"], spec["seed"])


def make_lattice(kind: str, n: int, d: int, seed: int = 0) -> Lattice:
    """The lattice of ``kind`` with n points in R^d (see the module table).

    Cost: O(n d) memory; Sobol generation O(n d log n), the rest O(n d).
    """
    return Lattice(kind, n, d, seed)
