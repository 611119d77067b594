"""π₀ by PCA (core/code_bank.py): the images' principal scores matched to the lattice, in one
assignment for small sets and in blocks (no n×n array) for archives and data on disk."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

import neurosql.core.code_bank as code_bank
from neurosql.core.assignment import assign
from neurosql.core.code_bank import initial_assignment
from neurosql.core.lattice import make_lattice
from neurosql.data.container import LazyImages

solve = lambda C, method: assign(C, method or "exact")


def two_factor_images(n: int, seed: int = 0):
    """n 8×8 images a·U + b·V + noise whose two factors (a, b) have unequal spread, so the first
    principal direction is a's; returns the images in [0, 1] and the factors."""
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((2, 64)) / 8
    a, b = rng.standard_normal(n) * 2.0, rng.standard_normal(n)
    x = 0.5 + 0.15 * (a[:, None] * U + b[:, None] * V) + 0.005 * rng.standard_normal((n, 64))
    return torch.from_numpy(np.clip(x, 0, 1).reshape(n, 1, 8, 8).astype(np.float32)), a, b


def reference_scores(X: torch.Tensor, k: int) -> np.ndarray:
    """Standardised scores on the first k principal directions, by numpy's full SVD."""
    flat = X.flatten(1).double().numpy()
    flat = flat - flat.mean(0)
    scores = flat @ np.linalg.svd(flat, full_matrices=False)[2][:k].T
    return (scores - scores.mean(0)) / scores.std(0, ddof=1)


FLIPS = ([1, 1], [1, -1], [-1, 1], [-1, -1])  # the sign of a principal direction is arbitrary


def standardised_lattice(Q: torch.Tensor) -> np.ndarray:
    L = Q.double().numpy()
    return (L - L.mean(0)) / L.std(0, ddof=1)


def matched_cost(S: np.ndarray, L: np.ndarray, perm: np.ndarray) -> float:
    """Σ‖s_i − l_π(i)‖² for the better sign of each score."""
    return min(float(((S * f - L[perm]) ** 2).sum()) for f in FLIPS)


def optimum(S: np.ndarray, L: np.ndarray) -> float:
    """The least Σ‖s_i − l_π(i)‖² over all permutations π (scipy's exact assignment)."""
    C = ((S[:, None] - L[None]) ** 2).sum(-1)
    return float(C[linear_sum_assignment(C)].sum())


def optimal_cost(S: np.ndarray, L: np.ndarray) -> float:
    """:func:`optimum` for the better sign of each score."""
    return min(optimum(S * f, L) for f in FLIPS)


@pytest.fixture
def small_blocks(monkeypatch):
    """The blockwise path at test size: sets above 120 images, PCA fitted on 150, blocks of 50."""
    monkeypatch.setattr(code_bank, "PCA_INIT_MAX", 120)
    monkeypatch.setattr(code_bank, "PCA_FIT", 150)
    monkeypatch.setattr(code_bank, "PCA_BLOCK", 50)


def test_pca_initial_assignment_is_the_optimal_matching_of_scores_to_the_lattice():
    X, a, _ = two_factor_images(100)
    Q = make_lattice("sobol_gaussian", 100, 2, 0).points
    perm = initial_assignment(X, Q, "pca", 0, solve)
    S, L = reference_scores(X, 2), standardised_lattice(Q)
    # Optimal, within 10 % (torch.pca_lowrank's directions are randomised approximations of the
    # SVD's), for the signs the code gave its directions.
    assert any(float(((S * f - L[perm]) ** 2).sum()) <= 1.1 * optimum(S * f, L) for f in FLIPS)
    assert abs(spearmanr(a, L[perm, 0])[0]) > 0.95


def test_blockwise_pca_assignment_of_an_archive_is_a_near_optimal_permutation(small_blocks, monkeypatch):
    n = 400
    X, a, b = two_factor_images(n)
    Q = make_lattice("sobol_gaussian", n, 2, 0).points
    sizes, real_cdist = [], torch.cdist
    monkeypatch.setattr(torch, "cdist", lambda A, B: sizes.append(len(A) * len(B)) or real_cdist(A, B))
    perm = initial_assignment(X, Q, "pca", 0, solve)
    assert np.array_equal(np.sort(perm), np.arange(n))
    assert max(sizes) <= 50 * 50  # no n×n array: blocks only
    S, L = reference_scores(X, 2), standardised_lattice(Q)
    # Each image keeps both factors: the first along the lattice's first coordinate (the sort), the
    # second along the second (the assignment within each block).
    assert abs(spearmanr(a, L[perm, 0])[0]) > 0.99
    assert abs(spearmanr(b, L[perm, 1])[0]) > 0.8
    random = matched_cost(S, L, np.random.default_rng(0).permutation(n))
    assert matched_cost(S, L, perm) <= 3 * optimal_cost(S, L) and matched_cost(S, L, perm) <= 0.05 * random


def test_blockwise_pca_assignment_reads_data_on_disk_as_it_reads_a_tensor(small_blocks, tmp_path):
    X, _, _ = two_factor_images(300)
    path = tmp_path / "x.npy"
    np.save(path, (X.numpy() * 255).round().astype(np.uint8))
    Q = make_lattice("sobol_gaussian", 300, 4, 0).points
    on_disk = LazyImages(np.load(path, mmap_mode="r"))
    in_memory = torch.from_numpy(np.load(path)).float() / 255
    torch.manual_seed(0)
    first = initial_assignment(on_disk, Q, "pca", 0, solve)
    torch.manual_seed(0)
    assert np.array_equal(first, initial_assignment(in_memory, Q, "pca", 0, solve))


def test_random_initial_assignment_is_a_seeded_permutation():
    X, _, _ = two_factor_images(50)
    Q = make_lattice("sobol_gaussian", 50, 2, 0).points
    perm = initial_assignment(X, Q, "random", 3, solve)
    assert np.array_equal(np.sort(perm), np.arange(50))
    assert np.array_equal(perm, initial_assignment(X, Q, "random", 3, solve))
    assert not np.array_equal(perm, initial_assignment(X, Q, "random", 4, solve))


def test_pca_directions_have_one_sign_whichever_images_fit_them():
    """Processes under torchrun fit the PCA on their own shards: each direction must come out with
    the same sign on every shard, or the lattice's first coordinate means bright on one and dark on
    the other."""
    X, a, b = two_factor_images(400)
    signs = set()
    for seed in range(6):
        shard = np.random.default_rng(seed).permutation(400)[:200]
        scores = code_bank._pca_scores(X[torch.as_tensor(shard)], 2, seed, torch.device("cpu")).numpy()
        signs.add((np.sign(np.corrcoef(a[shard], scores[:, 0])[0, 1]), np.sign(np.corrcoef(b[shard], scores[:, 1])[0, 1])))
    assert len(signs) == 1
