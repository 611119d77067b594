"""Linear assignment of data points (rows) to lattice points (columns).

Given the cost C[i, k] = loss(X_i, G(Q_k)) of explaining image i by lattice
code k, the assignment step of NeuroSQL (paper §2.4, Eq. 5) picks an
injective map perm: {0..n-1} -> {0..m-1}, n <= m,

    minimise  sum_i C[i, perm[i]]   over injective perm,

exactly (shortest augmenting paths with a certificate of optimality) or
greedily (App. G, Algorithm 3). Every solver takes an (n, m) numpy array or
torch tensor (any device) and returns perm as an (n,) int64 numpy array of
distinct columns.

Why the exact solver is not simply scipy's dense one (measured by
``python -m benchmarks.assignment`` on the costs of a real MNIST fit, 2-core
CPU): at n = 2000, Algorithm 3 takes ~12 ms, scipy's linear_sum_assignment
~0.55 s, the ``lap`` package's dense LAPJV no less, and scipy's sparse
min_weight_full_bipartite_matching ~0.1 s per round without giving the dual
prices a proof of optimality needs. So the exact solver keeps the k
cheapest columns of each row in reduced cost, solves that sparse problem
with compiled Jonker-Volgenant steps (numba), and proves the answer optimal
on the full matrix with the dual prices (LP duality, one O(nm) pass);
rows the proof does not cover get more columns and are solved again. The
previous round's solution, passed as ``warm_start``, supplies prices close
to the new ones (NeuroSQL solves a similar problem every K epochs): warm,
the solve takes ~1.1x Algorithm 3's time at n = 2000 and ~1.5x at n = 5000
(its two O(n m) passes on two threads; one thread: ~1.4x and ~2.1x); from a
permutation alone ~2-3x, cold ~7-8x. Without numba the exact
solver is scipy's.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from neurosql.errors import NeuroSQLError

try:  # optional: compiles the sparse solver; without it "exact" is scipy's dense solver
    import numba
    from numba import njit, prange
except ImportError:
    njit, prange = None, range

ASSIGNMENTS = ("exact", "greedy")
CANDIDATES = 16  # k: cheapest columns per row in the sparse problem (measured fastest among 8-32)
ROW_REDUCTION_STEPS = 30  # bids per free row before shortest paths (measured fastest among 0-100)
FRESH = 2  # rows the proof fails get FRESH * k new candidates (2 measured faster than 4 or 8)
MAX_ROUNDS = 50  # certificate rounds before falling back to scipy (real costs need 3-6)
SCIPY_BELOW = 64  # rows: smaller problems go to scipy, faster there than the compiled solver's setup


@dataclass(frozen=True)
class ExactSolution:
    """An optimal assignment and the column prices that certify it.

    With u_i = C[i, perm[i]] - prices[perm[i]], every reduced cost
    C[i, j] - u_i - prices[j] is >= 0 (up to rounding), which proves perm
    optimal (LP duality). Pass it back as ``warm_start`` for the next, similar
    cost matrix. ``prices`` is None when scipy solved the problem.
    """

    perm: np.ndarray  # (n,) int64 distinct columns
    prices: np.ndarray | None  # (m,) float64 column duals v


def _as_cost(cost) -> np.ndarray:
    """Validated (n, m) float64 copy-or-view of ``cost`` on the CPU, 1 <= n <= m."""
    if isinstance(cost, torch.Tensor):
        cost = cost.detach().to("cpu", torch.float64).numpy()
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise NeuroSQLError(f"cost matrix must be 2-D (n data points, m lattice points), got shape {c.shape}")
    n, m = c.shape
    if n == 0 or n > m:
        raise NeuroSQLError(f"cost matrix of shape {c.shape} needs 1 <= n <= m rows (data) per columns (lattice); "
                            "use a lattice with at least as many points as data points")
    if not np.isfinite(c).all():
        raise NeuroSQLError("cost matrix has NaN or infinite entries; check the loss and the generator outputs")
    return c


def _kernel(fn=None, *, parallel: bool = False):
    """fn compiled by numba (cached on disk) when numba is installed; unused otherwise. ``parallel``:
    its ``prange`` loops run on torch's thread count (the O(n m) passes over C, the solve's bulk
    at n = 5000: 37 ms each on one thread, and a round's cost matrix leaves the cores idle)."""
    if fn is None:
        return lambda f: _kernel(f, parallel=parallel)
    return njit(cache=True, parallel=parallel)(fn) if njit is not None else fn


@_kernel(parallel=True)
def _cheapest(C, v, rows, k, extra):
    """Candidate columns: per row i = rows[r], the k smallest reduced costs C[i, j] - v[j].

    Returns cols (len(rows), k + 1), the k cheapest columns then extra[r];
    costs (len(rows), k + 1), C at those columns (dummy rows i >= n cost 0);
    and bound (len(rows),), the k-th smallest reduced cost: every other
    column costs at least that, and still does after prices v decrease.
    Complexity: O(len(rows) m) for m >> k, rows in parallel.
    """
    n, m = C.shape
    cols = np.empty((len(rows), k + 1), np.int64)
    costs = np.empty((len(rows), k + 1))
    bound = np.empty(len(rows))
    zero = np.zeros(m)  # the cost row of every dummy row
    for r in prange(len(rows)):
        row = C[rows[r]] if rows[r] < n else zero
        best = np.full(k, np.inf)
        worst = np.inf  # best[k - 1]
        for j in range(m):
            x = row[j] - v[j]
            if x < worst:  # rare once the k best are good: insertion into them
                p = k - 1
                while p > 0 and best[p - 1] > x:
                    best[p] = best[p - 1]
                    cols[r, p] = cols[r, p - 1]
                    p -= 1
                best[p] = x
                cols[r, p] = j
                worst = best[k - 1]
        cols[r, k] = extra[r]
        for p in range(k + 1):
            costs[r, p] = row[cols[r, p]]
        bound[r] = worst
    return cols, costs, bound


@_kernel(parallel=True)
def _stale_rows(C, v, indptr, indices, weights, col4row, bound):
    """Rows whose matched reduced cost u_i = C[i, col] - v[col] is not proved
    minimal over the full row (LP duality: all proved means perm is optimal).

    A row is proved if u_i <= its candidates' reduced costs and bound[i];
    failing that, the exact minimum over its other columns is computed
    (O(m)) and becomes the new bound. The tolerance is 1e-12 of the scale:
    price updates round at ~1e-16 per step.
    Complexity: O(E) plus O(m) per row needing the scan, rows in parallel.
    """
    n, m = C.shape
    u = np.empty(len(col4row))
    for i in range(len(col4row)):
        u[i] = (C[i, col4row[i]] if i < n else 0.0) - v[col4row[i]]
    tol = 1e-12 * (1.0 + np.abs(u).max() + 2.0 * np.abs(v).max())
    stale = np.zeros(len(col4row), np.bool_)
    zero = np.zeros(m)  # the cost row of every dummy row
    for i in prange(len(col4row)):
        low = np.inf
        for p in range(indptr[i], indptr[i + 1]):
            low = min(low, weights[p] - v[indices[p]])
        if u[i] > low + tol:
            stale[i] = True
        elif u[i] > bound[i] + tol:
            row = C[i] if i < n else zero
            others = row - v  # (m,) reduced costs, the candidates' masked out below
            for p in range(indptr[i], indptr[i + 1]):
                others[indices[p]] = np.inf
            low = others.min()
            bound[i] = low  # the others, at today's prices: a bound that lasts longer than the row minimum
            stale[i] = u[i] > low + tol
    return np.flatnonzero(stale)


@_kernel
def _row_reduction(v, indptr, indices, weights, col4row, row4col, matched, free, steps):
    """Jonker-Volgenant augmenting row reduction: each free row bids for its
    cheapest candidate j1, raising its price until j1 is no cheaper than the
    runner-up j2, and evicts j1's owner, which bids next. At most ``steps``
    bids; returns the rows left free (ties and the rest) for shortest paths.
    """
    todo = [r for r in free]
    left = [np.int64(0) for _ in range(0)]
    pos = 0
    while pos < len(todo):
        i = todo[pos]
        pos += 1
        if pos > steps:
            left.append(i)
            continue
        u1, u2, p1, p2 = np.inf, np.inf, -1, -1
        for p in range(indptr[i], indptr[i + 1]):
            x = weights[p] - v[indices[p]]
            if x < u2 and (p1 < 0 or indices[p] != indices[p1]):
                if x < u1:
                    u2, p2 = u1, p1
                    u1, p1 = x, p
                else:
                    u2, p2 = x, p
        owner = row4col[indices[p1]]
        raised = u1 < u2 < np.inf
        if raised:
            v[indices[p1]] -= u2 - u1
        elif owner >= 0 and p2 >= 0:  # a tie: take the equally cheap runner-up instead
            p1 = p2
            owner = row4col[indices[p1]]
        if owner >= 0:
            col4row[owner] = -1
            if raised:  # a raised price means progress: the evicted row bids next
                todo.append(owner)
            else:  # without one, bids could cycle: leave the row to shortest paths
                left.append(owner)
        col4row[i] = indices[p1]
        row4col[indices[p1]] = i
        matched[i] = weights[p1]
    return left


@_kernel
def _augment(v, indptr, indices, weights, col4row, row4col, matched, free, steps):
    """Match every free row on the sparse candidate graph, keeping each matched
    row on a cheapest candidate in reduced cost; prices v only decrease.

    Row reduction first (see ``_row_reduction``), then one Dijkstra shortest
    augmenting path per row still free, with the price update of the
    Hungarian method. matched[i] is the cost of row i's edge. Returns False
    if a row has no augmenting path.
    Complexity: O(E log m) per path, E = number of candidate edges.
    """
    m = len(v)
    dist = np.full(m, np.inf)
    done = np.zeros(m, np.bool_)
    pred = np.empty(m, np.int64)  # the edge (CSR position) that reached each column
    touched = np.empty(m, np.int64)
    edge_row = np.empty(len(indices), np.int64)
    for i in range(m):
        edge_row[indptr[i]:indptr[i + 1]] = i
    for cur in _row_reduction(v, indptr, indices, weights, col4row, row4col, matched, free, steps):
        if col4row[cur] >= 0:
            continue
        ui = np.inf
        for p in range(indptr[cur], indptr[cur + 1]):
            ui = min(ui, weights[p] - v[indices[p]])
        heap = [(0.0, np.int64(0), np.int64(0)) for _ in range(0)]
        i, d, nt = cur, 0.0, 0
        sink = -1
        while True:
            for p in range(indptr[i], indptr[i + 1]):  # relax row i's candidates
                j = indices[p]
                dj = d + (weights[p] - v[j] - ui)
                if not done[j] and dj < dist[j]:
                    if dist[j] == np.inf:
                        touched[nt] = j
                        nt += 1
                    dist[j] = dj
                    pred[j] = p
                    heapq.heappush(heap, (dj, np.int64(row4col[j] >= 0), j))  # free columns first on ties
            j = -1
            while heap and j < 0:
                d, _, j = heapq.heappop(heap)
                if done[j] or d > dist[j]:
                    j = -1  # a stale heap entry
            if j < 0:
                return False  # no augmenting path within the candidates
            done[j] = True
            if row4col[j] < 0:
                sink = j
                break
            i = row4col[j]
            ui = matched[i] - v[j]
        for t in range(nt):
            j = touched[t]
            if done[j]:
                v[j] -= max(d - dist[j], 0.0)  # max: rounding must never raise a price
            dist[j] = np.inf
            done[j] = False
        _flip_path(sink, cur, pred, edge_row, weights, col4row, row4col, matched)
    return True


@_kernel
def _flip_path(sink, cur, pred, edge_row, weights, col4row, row4col, matched):
    """Augment along the shortest path from row ``cur`` to the free column ``sink``: every row on it
    takes the column its edge ``pred`` reached, so one more row is matched."""
    j = sink
    while True:
        p = pred[j]
        i = edge_row[p]
        row4col[j] = i
        matched[i] = weights[p]
        col4row[i], j = j, col4row[i]
        if i == cur:
            break


def _csr(rows, cols, costs, size):
    """Row-sorted candidate lists as CSR: indptr (size + 1,), indices, weights (their costs)."""
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=size), out=indptr[1:])
    return indptr, cols[order], costs[order]


def _sparse_exact(C, prices, guess):
    """Certified optimal perm and prices by the sparse solver, or None to fall back.

    C (n, m) gets m - n dummy rows of cost 0, making the problem square
    (a column left unused is one a dummy row takes). Start: prices v (warm,
    or the column minima) and the k cheapest columns of every row; matching
    ``guess`` (or the identity) kept on the rows where it is a cheapest
    candidate. Then rounds of: solve on the candidates (``_augment``);
    prove each row's column cheapest over its full row (``_stale_rows``);
    give the rows that fail FRESH * k fresh candidates and solve them again.
    """
    n, m = C.shape
    v = prices.copy() if prices is not None else np.minimum(C.min(0), 0.0) if n < m else C.min(0)  # (m,)
    rows = np.arange(m)
    col4row = np.empty(m, np.int64)  # rows n.. are the dummies
    col4row[:n] = np.arange(n) if guess is None else guess
    unused = np.ones(m, bool)
    unused[col4row[:n]] = False
    col4row[n:] = np.flatnonzero(unused)
    row4col = np.empty(m, np.int64)
    row4col[col4row] = rows
    k = min(CANDIDATES, m)
    cand, costs, bound = _cheapest(C, v, rows, k, col4row)  # (m, k + 1) twice, (m,)
    indptr, indices, weights = np.arange(0, m * (k + 1) + 1, k + 1), cand.ravel(), costs.ravel()
    matched = costs[:, k].copy()  # (m,) cost of each row's edge
    free = rows[matched - v[col4row] > costs[:, 0] - v[cand[:, 0]]]  # not on a cheapest candidate
    for _ in range(MAX_ROUNDS):
        row4col[col4row[free]] = -1
        col4row[free] = -1
        if not _augment(v, indptr, indices, weights, col4row, row4col, matched, free, ROW_REDUCTION_STEPS * len(free)):
            return None
        stale = _stale_rows(C, v, indptr, indices, weights, col4row, bound)
        if len(stale) == 0:
            return col4row[:n].copy(), v
        # A cheaper column exists outside these rows' candidates: give them more, and solve them again.
        k = min(FRESH * CANDIDATES, m)
        fresh, fresh_costs, bound[stale] = _cheapest(C, v, stale, k, col4row[stale])
        edge_rows = np.repeat(rows, np.diff(indptr))
        keep = np.ones(m, bool)
        keep[stale] = False
        keep = keep[edge_rows]
        indptr, indices, weights = _csr(np.concatenate([edge_rows[keep], np.repeat(stale, k + 1)]),
                                        np.concatenate([indices[keep], fresh.ravel()]),
                                        np.concatenate([weights[keep], fresh_costs.ravel()]), m)
        free = stale
    return None


def _warm_start(warm_start, n: int, m: int):
    """Validated (guess (n,) int64 or None, prices (m,) float64 or None) from a warm start."""
    if warm_start is None:
        return None, None
    perm, prices = (warm_start.perm, warm_start.prices) if isinstance(warm_start, ExactSolution) else (warm_start, None)
    perm = np.asarray(perm.detach().cpu() if isinstance(perm, torch.Tensor) else perm)
    if perm.shape != (n,) or not np.issubdtype(perm.dtype, np.integer) or perm.min() < 0 or perm.max() >= m \
            or len(np.unique(perm)) != n:
        raise NeuroSQLError(f"warm_start must hold {n} distinct integer columns in [0, {m}), got shape {perm.shape} "
                            f"dtype {perm.dtype}; pass the previous exact_solution() for a cost of this shape, or None")
    if prices is not None:
        prices = np.asarray(prices, dtype=np.float64)
        if prices.shape != (m,) or not np.isfinite(prices).all():
            raise NeuroSQLError(f"warm_start prices must be {m} finite numbers, got shape {prices.shape}; "
                                "pass the previous exact_solution() for a cost of this shape, or None")
    return perm.astype(np.int64), prices


def exact_solution(cost, warm_start=None) -> ExactSolution:
    """Optimal injective assignment of rows to columns, with its certifying prices.

    Problem: min_{perm injective} sum_{i<n} C[i, perm[i]], C of shape (n, m),
    n <= m. With numba: the k cheapest columns per row in reduced cost,
    augmenting row reduction and Dijkstra shortest augmenting paths on them
    (Jonker & Volgenant), and LP duality on the full matrix to certify the
    result, adding columns until it does (see the module docstring).
    Without numba, or for n < SCIPY_BELOW: scipy.optimize.linear_sum_assignment.

    warm_start: None, a previous ExactSolution (perm and prices), or a
    previous perm alone. Any valid one gives the same optimum; a close one
    (the last round's) makes the solve several times faster.
    Shapes: cost (n, m) -> perm (n,) int64 distinct entries in [0, m), prices (m,).
    Complexity: O(n m) for candidates and certificate plus O(E log m) per
    augmenting path on E = O(k m) edges; worst case O(n E log m) (the dense
    scipy fallback is O(n^2 m)).
    References: Jonker & Volgenant (1987), "A shortest augmenting path
    algorithm for dense and sparse linear assignment problems", Computing
    38(4); Crouse (2016), "On implementing 2D rectangular assignment
    algorithms", IEEE TAES 52(4).
    """
    c = _as_cost(cost)
    n, m = c.shape
    guess, prices = _warm_start(warm_start, n, m)
    if njit is not None and n >= SCIPY_BELOW:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        solved = _sparse_exact(c, prices, guess)
        if solved is not None:
            return ExactSolution(*solved)
    # With n <= m every row is matched and scipy returns rows sorted, so the
    # row indices are arange(n) and the columns are perm itself.
    _, cols = linear_sum_assignment(c)
    return ExactSolution(cols.astype(np.int64), None)


def exact_assignment(cost, warm_start=None) -> np.ndarray:
    """Optimal perm (n,) int64 for cost (n, m); see ``exact_solution``."""
    return exact_solution(cost, warm_start).perm


def greedy_assignment(cost) -> np.ndarray:
    """Row-by-row greedy assignment, the paper's Algorithm 3 (App. G).

    Problem (approximate): for i = 0..n-1 in order,
    perm[i] = argmin_{k not in {perm[0..i-1]}} C[i, k], ties to the lowest k
    (the first minimum found by Algorithm 3's strict '<' scan). No optimality
    guarantee; the result depends on the row order.

    Shapes: cost (n, m) -> perm (n,) int64, distinct entries in [0, m).
    Complexity: O(n m) time (one vectorised argmin per row), O(n m) memory.
    Reference: NeuroSQL paper, App. G, Algorithm 3.
    """
    c = _as_cost(cost)
    n, m = c.shape
    taken = np.zeros(m, dtype=bool)  # (m,) the set S of Algorithm 3
    perm = np.empty(n, dtype=np.int64)
    for i in range(n):
        # Costs are finite, so a free column always beats a masked one.
        k = int(np.argmin(np.where(taken, np.inf, c[i])))
        perm[i] = k
        taken[k] = True
    return perm


def assign(cost, method: str = "exact", warm_start=None) -> np.ndarray:
    """Assignment perm (n,) int64 of rows to distinct columns of cost (n, m), n <= m.

    ``method`` is "exact" (see ``exact_solution``; ``warm_start`` speeds it
    up) or "greedy" (see ``greedy_assignment``; ``warm_start`` is unused).
    """
    if method == "exact":
        return exact_assignment(cost, warm_start)
    if method == "greedy":
        return greedy_assignment(cost)
    raise NeuroSQLError(f"unknown assignment method {method!r}; use one of: {', '.join(ASSIGNMENTS)}")


def assignment_cost(cost, perm) -> float:
    """Mean matched cost (1/n) sum_i C[i, perm[i]], the paper's objective over n.

    Shapes: cost (n, m), perm (n,) integer column indices in [0, m).
    Complexity: O(n).
    """
    c = _as_cost(cost)
    p = np.asarray(perm.detach().cpu() if isinstance(perm, torch.Tensor) else perm)
    n, m = c.shape
    if p.shape != (n,) or not np.issubdtype(p.dtype, np.integer) or p.min() < 0 or p.max() >= m:
        raise NeuroSQLError(f"perm must be {n} integer column indices in [0, {m}), "
                            f"got shape {p.shape} dtype {p.dtype}; pass the output of assign()")
    return float(c[np.arange(n), p].mean())
