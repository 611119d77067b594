"""Benchmark: exact assignment against greedy (Algorithm 3) on real NeuroSQL costs.

Issue 7, target 2: at n = 2000 and n = 5000, the exact solver's time is at
most 1.5x the greedy solver's, on cost matrices of a real training run.
The costs come from a short MNIST fit (epochs 1-3 train, epoch 3 assigns,
epochs 4-6 train; C is the next round's cost), built once and cached as .npy
under CACHE (never in the repository). Times are the best of REPEATS runs
of each solver in the same process, wall clock. The exact solver is timed
three ways: warm (the previous round's ExactSolution, what the model keeps
between rounds; this one is held to the target), from the previous
permutation only, and cold.

    python -m benchmarks.assignment [--scipy] [--quick]   (--quick: n = QUICK_SIZE only, to check the code)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from neurosql.core.assignment import assignment_cost, exact_solution, greedy_assignment

CACHE = Path(os.environ.get("NEUROSQL_BENCH_CACHE", "/tmp/neurosql_assignment_cache"))
SIZES = (2000, 5000)
QUICK_SIZE = 200
TARGET = 1.5  # exact (warm) time / greedy time
REPEATS = 5


def real_costs(n: int, cache: Path = CACHE, **fit_options) -> dict[str, np.ndarray]:
    """Two consecutive assignment rounds of a short MNIST fit, cached as .npy under ``cache``.

    Returns cost_prev (n, n) float32, the cost the fit solved at epoch 3;
    perm_prev (n,), its exact solution (the model's perm_); and cost (n, n)
    float32, the next round's cost after epochs 4-6. ``fit_options`` change
    the NeuroSQL parameters (tests use a narrow generator).
    """
    files = {key: cache / f"{key}_{n}.npy" for key in ("cost_prev", "perm_prev", "cost")}
    if not all(f.exists() for f in files.values()):
        import torch

        from neurosql import NeuroSQL
        from neurosql.data import load_data
        from neurosql.core.losses import pairwise_cost

        print(f"building the n={n} cost matrices (MNIST fit + pairwise SSIM+L1, minutes on a CPU) ...", flush=True)
        X = load_data(None, "train" if n <= 3500 else "all", limit=n, progress=False).images
        recorded = {}

        def record(model, row):
            """After epoch 3's round: its cost C = ℓ(X, G(Q)) (G is unchanged since) and its π."""
            if "assign_cost" in row and not recorded:
                with torch.no_grad():
                    C = pairwise_cost(X, model.decode(model.lattice_.points))  # (n, n)
                perm = np.asarray(model.perm_, dtype=np.int64).copy()
                matched = float(C[torch.arange(len(perm)), torch.as_tensor(perm)].mean())
                if not np.isclose(matched, row["assign_cost"], rtol=1e-4):
                    raise RuntimeError(f"recomputed cost {matched} is not the one the fit solved ({row['assign_cost']})")
                recorded.update(cost_prev=C, perm_prev=perm)

        options = {**dict(latent_dim=16, epochs=6, assign_every=3, progress=False, val_fraction=0), **fit_options}
        model = NeuroSQL(**options).fit(X, callback=record)
        if not recorded:
            raise RuntimeError("the fit made no assignment round at epoch 3")
        with torch.no_grad():
            cost = pairwise_cost(X, model.decode(model.lattice_.points))  # (n, n)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(files["cost_prev"], recorded["cost_prev"].numpy().astype(np.float32))
        np.save(files["perm_prev"], recorded["perm_prev"])
        np.save(files["cost"], cost.numpy().astype(np.float32))
    return {key: np.load(f) for key, f in files.items()}


def best_time(solve, repeats: int) -> tuple[float, np.ndarray]:
    """Smallest wall time of ``repeats`` calls, and the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = solve()
        times.append(time.perf_counter() - start)
    return min(times), out


def measure(n: int, with_scipy: bool = False) -> dict:
    """Times and objectives (mean matched cost) of every solver on the n x n real costs."""
    data = real_costs(n)
    C = data["cost"].astype(np.float64)  # (n, n); float64 so no solver pays a conversion
    previous = exact_solution(data["cost_prev"].astype(np.float64))  # the state the model keeps
    exact_solution(C[:100, :100])  # loads the compiled kernels before timing
    row = {"n": n}
    # Interleaved, so that a busy machine slows every solver alike.
    for _ in range(2):
        for name, solve, repeats in (
            ("greedy", lambda: greedy_assignment(C), REPEATS),
            ("warm", lambda: exact_solution(C, previous).perm, REPEATS),
            ("perm_only", lambda: exact_solution(C, data["perm_prev"]).perm, 2),
            ("cold", lambda: exact_solution(C).perm, 2),
        ):
            seconds, perm = best_time(solve, repeats)
            row[f"{name}_s"] = min(seconds, row.get(f"{name}_s", np.inf))
            row[f"{name}_objective"] = assignment_cost(C, perm)
    if with_scipy:
        from scipy.optimize import linear_sum_assignment

        row["scipy_s"], (_, cols) = best_time(lambda: linear_sum_assignment(C), 1)
        row["scipy_objective"] = assignment_cost(C, cols)
    row["ratio"] = row["warm_s"] / row["greedy_s"]
    row["gap_percent"] = 100 * (row["greedy_objective"] / row["warm_objective"] - 1)
    return row


COLUMNS = (  # header, key in a measured row, digits after the point
    ("n", "n", 0),
    ("greedy s", "greedy_s", 4),
    ("exact s", "warm_s", 4),
    ("ratio", "ratio", 2),
    ("perm-only s", "perm_only_s", 4),
    ("cold s", "cold_s", 4),
    ("greedy obj", "greedy_objective", 6),
    ("exact obj", "warm_objective", 6),
    ("gap %", "gap_percent", 2),
)
SCIPY_COLUMNS = (("scipy s", "scipy_s", 3), ("scipy obj", "scipy_objective", 6))


def run(with_scipy: bool = False, quick: bool = False) -> list[dict]:
    """Measure every size, print the table, return one result entry per size for benchmarks/results.json."""
    rows = [measure(n, with_scipy) for n in ((QUICK_SIZE,) if quick else SIZES)]
    columns = COLUMNS + (SCIPY_COLUMNS if with_scipy else ())
    print("  ".join(f"{header:>11}" for header, _, _ in columns))
    for r in rows:
        print("  ".join(f"{r[key]:>11.{digits}f}" for _, key, digits in columns))
    for r in rows:
        same = [r[f"{key}_objective"] for key in ("warm", "perm_only", "cold") + (("scipy",) if with_scipy else ())]
        if max(same) - min(same) > 1e-9 * abs(min(same)):
            raise RuntimeError(f"exact objectives differ at n={r['n']}: {same}")
    return [
        {
            "name": f"assignment_n{r['n']}",
            "n": r["n"],
            "ratio": r["ratio"],
            "target": TARGET,
            "met": bool(r["ratio"] <= TARGET),
            "greedy_s": r["greedy_s"],
            "exact_warm_s": r["warm_s"],
            "exact_perm_only_s": r["perm_only_s"],
            "exact_cold_s": r["cold_s"],
            "greedy_objective": r["greedy_objective"],
            "exact_objective": r["warm_objective"],
        }
        for r in rows
    ]


if __name__ == "__main__":
    run(with_scipy="--scipy" in sys.argv[1:], quick="--quick" in sys.argv[1:])
