"""Assignment solvers against brute force, scipy, LP duality and a literal Algorithm 3."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import neurosql.core.assignment as assignment
from neurosql.core.assignment import (
    ASSIGNMENTS,
    ExactSolution,
    assign,
    assignment_cost,
    exact_assignment,
    exact_solution,
    greedy_assignment,
)
from neurosql.errors import NeuroSQLError

SHAPES = [(1, 1), (2, 2), (3, 5), (4, 4), (5, 7), (6, 6), (7, 7)]


def brute_force_min(cost):
    """Smallest sum_i C[i, perm[i]] over all injective perms, by enumeration."""
    n, m = cost.shape
    return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))


def algorithm3(cost):
    """The paper's Algorithm 3, line by line (0-based, rectangular allowed)."""
    n, m = len(cost), len(cost[0])
    assigned = set()
    perm = [0] * n
    for i in range(n):
        c_min, j_star = float("inf"), 0
        for j in range(m):
            if j not in assigned and cost[i][j] < c_min:
                c_min = cost[i][j]
                j_star = j
        perm[i] = j_star
        assigned.add(j_star)
    return perm


def is_injection(perm, n, m):
    return perm.shape == (n,) and perm.dtype == np.int64 and len(set(perm.tolist())) == n \
        and perm.min() >= 0 and perm.max() < m


@pytest.fixture(params=["sparse", "scipy"])
def solver(request, monkeypatch):
    """Run a test with the compiled sparse solver (at every size) and with the scipy fallback."""
    if request.param == "sparse":
        pytest.importorskip("numba")
        monkeypatch.setattr(assignment, "SCIPY_BELOW", 1)
    else:
        monkeypatch.setattr(assignment, "njit", None)  # as if numba were not installed
    return request.param


@pytest.fixture
def sparse(monkeypatch):
    """The compiled sparse solver at every size."""
    pytest.importorskip("numba")
    monkeypatch.setattr(assignment, "SCIPY_BELOW", 1)


def total(cost, perm):
    return cost[np.arange(len(perm)), perm].sum()


def scipy_total(cost):
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].sum()


def assert_optimal(cost, perm):
    """perm is an injection whose total equals scipy's optimum within 1e-9 relative."""
    assert is_injection(perm, *cost.shape)
    assert total(cost, perm) == pytest.approx(scipy_total(cost), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", SHAPES)
def test_exact_matches_brute_force(shape, seed, solver):
    cost = np.random.default_rng(seed).random(shape)
    perm = exact_assignment(cost)
    assert is_injection(perm, *shape)
    assert cost[np.arange(shape[0]), perm].sum() == pytest.approx(brute_force_min(cost), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_exact_matches_brute_force_with_ties(seed, solver):
    cost = np.random.default_rng(seed).integers(0, 3, size=(6, 7)).astype(float)
    perm = assign(cost, "exact")
    assert cost[np.arange(6), perm].sum() == brute_force_min(cost)


def structured_costs(rng, n, m):
    """Tie-heavy and structured matrices: integer levels, constant, rank one,
    hub columns every row wants, and 1-D distances (many optimal solutions)."""
    hub = rng.random((n, m)) + 1.0
    hub[:, : max(1, m // 20)] = rng.random((n, max(1, m // 20))) * 0.1
    x, y = rng.random(n), rng.random(m)
    return {
        "levels": rng.integers(0, 3, size=(n, m)).astype(float),
        "constant": np.full((n, m), 0.25),
        "rank_one": np.outer(rng.random(n), rng.random(m)),
        "hub": hub,
        "distance": np.abs(x[:, None] - y[None, :]),
    }


@pytest.mark.parametrize("shape", [(200, 200), (60, 97), (64, 65)])
def test_exact_matches_scipy_on_random_and_structured(shape, sparse):
    rng = np.random.default_rng(sum(shape))
    costs = {"random": rng.random(shape), **structured_costs(rng, *shape)}
    for name, cost in costs.items():
        solution = exact_solution(cost)
        assert solution.prices is not None, name  # solved by the sparse path, not the fallback
        assert_optimal(cost, solution.perm)


@pytest.mark.parametrize("shape", [(200, 200), (60, 97)])
def test_warm_starts_keep_the_optimum(shape, sparse):
    """Fresh, perm-only, stale (another matrix's) and bad (random) warm starts all give the optimum."""
    rng = np.random.default_rng(7)
    n, m = shape
    previous = rng.random(shape)
    cost = previous + 0.2 * rng.random(shape)  # the next round: a drifted cost
    solution = exact_solution(previous)
    unrelated = exact_solution(rng.integers(0, 4, size=shape).astype(float))
    random_start = ExactSolution(rng.permutation(m)[:n], 10 * rng.normal(size=m))
    for warm in (solution, solution.perm, torch.from_numpy(solution.perm), unrelated, random_start):
        assert_optimal(cost, exact_assignment(cost, warm))
        assert_optimal(cost, assign(cost, "exact", warm_start=warm))
    for structured in structured_costs(rng, n, m).values():
        assert_optimal(structured, exact_assignment(structured, solution))


def test_one_thread_and_two_give_the_same_solution(sparse):
    """The candidate and certificate passes run rows in parallel on torch's thread count; each row
    is one thread's, so the answer, prices included, does not depend on how many there are."""
    rng = np.random.default_rng(11)
    cost = rng.random((300, 300))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = exact_solution(cost)
        torch.set_num_threads(2)
        two = exact_solution(cost)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one.perm, two.perm) and np.array_equal(one.prices, two.prices)
    assert_optimal(cost, two.perm)


@pytest.mark.parametrize("shape", [(120, 120), (50, 90)])
def test_prices_certify_optimality(shape, sparse):
    """LP duality, independent of scipy: with u_i = C[i, perm_i] - v[perm_i], every
    reduced cost C[i, j] - u_i - v_j is >= 0; for n < m the unused columns carry
    the highest price (they are what the zero-cost dummy rows take)."""
    cost = np.random.default_rng(3).random(shape)
    solution = exact_solution(cost)
    perm, v = solution.perm, solution.prices
    u = cost[np.arange(shape[0]), perm] - v[perm]
    assert (cost - u[:, None] - v[None, :]).min() >= -1e-9
    unused = np.setdiff1d(np.arange(shape[1]), perm)
    if len(unused):
        assert v[unused].min() >= v.max() - 1e-9


def test_certificate_adds_columns_the_candidates_missed(sparse, monkeypatch):
    """Every row's two cheapest columns are the same two hubs, so the optimum
    lies outside the first candidate lists: only the verify-and-add loop finds it."""
    monkeypatch.setattr(assignment, "CANDIDATES", 2)
    rng = np.random.default_rng(0)
    n = 80
    cost = 1.0 + rng.random((n, n))
    cost[:, :2] = rng.random((n, 2)) * 0.01
    calls = []
    cheapest = assignment._cheapest
    monkeypatch.setattr(assignment, "_cheapest", lambda C, v, rows, k, extra: calls.append(len(rows)) or
                        cheapest(C, v, rows, k, extra))
    solution = exact_solution(cost[::-1].copy())  # reversed: the identity start is far from optimal
    assert len(calls) >= 2 and calls[0] == n  # the full scan, then fresh candidates for stale rows
    assert solution.prices is not None
    assert_optimal(cost[::-1], solution.perm)


def test_falls_back_to_scipy_when_uncertified(sparse, monkeypatch):
    monkeypatch.setattr(assignment, "MAX_ROUNDS", 0)
    cost = np.random.default_rng(1).random((70, 70))
    solution = exact_solution(cost)
    assert solution.prices is None
    assert_optimal(cost, solution.perm)


@pytest.mark.parametrize("bad, message", [
    (np.arange(4), "distinct integer columns"),
    (np.array([0, 0, 1]), "distinct integer columns"),
    (np.array([0.0, 1.0, 2.0]), "distinct integer columns"),
    (np.array([0, 1, 5]), "distinct integer columns"),
    (ExactSolution(np.arange(3), np.zeros(3)), "prices must be 4"),
    (ExactSolution(np.arange(3), np.array([0.0, np.nan, 0.0, 0.0])), "prices must be 4"),
])
def test_bad_warm_start_raises(bad, message):
    with pytest.raises(NeuroSQLError, match=message):
        exact_assignment(np.zeros((3, 4)), bad)


def test_greedy_ignores_warm_start():
    cost = np.random.default_rng(2).random((30, 30))
    warm = exact_solution(cost)
    assert assign(cost, "greedy", warm_start=warm).tolist() == algorithm3(cost.tolist())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(1, 4), (5, 5), (8, 13), (30, 30)])
def test_greedy_is_algorithm3(shape, seed):
    rng = np.random.default_rng(seed)
    for cost in (rng.random(shape), rng.integers(0, 3, size=shape).astype(float)):
        perm = greedy_assignment(cost)
        assert is_injection(perm, *shape)
        assert perm.tolist() == algorithm3(cost.tolist())


def test_greedy_ties_go_to_lowest_free_column():
    assert greedy_assignment(np.zeros((3, 5))).tolist() == [0, 1, 2]
    cost = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [5.0, 5.0, 5.0]])
    assert greedy_assignment(cost).tolist() == [1, 0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_exact_objective_never_worse_than_greedy(seed):
    cost = np.random.default_rng(seed).random((40, 50))
    exact, greedy = assignment_cost(cost, assign(cost, "exact")), assignment_cost(cost, assign(cost, "greedy"))
    assert exact <= greedy + 1e-12


def test_greedy_can_be_suboptimal():
    # Row 0 grabs column 0 and row 1 pays 10: greedy 10 + 0 vs exact 1 + 1.
    cost = np.array([[0.0, 1.0], [1.0, 10.0]])
    assert assignment_cost(cost, assign(cost, "greedy")) == 5.0
    assert assignment_cost(cost, assign(cost, "exact")) == 1.0


def test_assignment_cost_is_mean_matched_cost():
    cost = np.arange(12.0).reshape(3, 4)
    assert assignment_cost(cost, [3, 0, 2]) == pytest.approx((3 + 4 + 10) / 3)


@pytest.mark.parametrize("method", ASSIGNMENTS)
def test_torch_input_matches_numpy(method):
    cost = torch.rand(9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    perm = assign(cost, method)
    assert perm.tolist() == assign(cost.double().numpy(), method).tolist()
    assert assignment_cost(cost, torch.from_numpy(perm)) == pytest.approx(assignment_cost(cost.numpy(), perm))


@pytest.mark.parametrize("method", ASSIGNMENTS)
@pytest.mark.parametrize("bad, message", [
    (np.zeros(4), "2-D"),
    (np.zeros((2, 2, 2)), "2-D"),
    (np.zeros((3, 2)), "n <= m"),
    (np.zeros((0, 2)), "n <= m"),
    (np.array([[0.0, np.nan]]), "NaN"),
    (np.array([[0.0, np.inf]]), "infinite"),
])
def test_bad_cost_raises(method, bad, message):
    with pytest.raises(NeuroSQLError, match=message):
        assign(bad, method)


def test_bad_method_and_perm_raise():
    with pytest.raises(NeuroSQLError, match="exact, greedy"):
        assign(np.zeros((2, 2)), "hungarian")
    for perm in ([0], [0, 2], [0.0, 1.0], [-1, 0]):
        with pytest.raises(NeuroSQLError, match="perm"):
            assignment_cost(np.zeros((2, 2)), perm)
