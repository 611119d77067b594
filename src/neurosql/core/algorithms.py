"""The paper's two training algorithms, as the steps the trainer calls (§2.4, §2.5, App. F).

Algorithm 1 (full-batch assignment) alternates generator epochs (its line 4, the trainer's
regression steps) with :func:`algorithm1_round` every K epochs. Algorithm 2 (mini-batch
assignment) runs :func:`algorithm2_step` on every batch. Both update a :class:`CodeBank`.

The callables keep this file free of networks and solvers: ``decode(z)`` is G in evaluation
mode, ``cost(x, images)`` the (|x|, |images|) matrix of ℓ, ``solve(C)`` a column per row of C.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .code_bank import CodeBank

Decode = Callable[[torch.Tensor], torch.Tensor]
Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def algorithm1_round(bank: CodeBank, X: torch.Tensor, decode: Decode, cost: Cost, solve) -> tuple[dict, torch.Tensor]:
    """Algorithm 1, lines 5–7, for this process's images X (n_local, ...):

    5: C_ik ← ℓ(X_i, G(Q_k)) for every image i and every lattice point k;
    6: π ← argmin over permutations of Tr(C_π)  (``solve`` sees all processes' rows);
    7: Ẑ_i ← ρ Q_π(i) + (1 − ρ) Ẑ_i.

    Returns the log numbers and G(Q) (n, ...), point k in row k, which validation reuses.
    """
    start = time.perf_counter()
    points = torch.arange(bank.n, device=bank.points.device)
    images = decode(bank.points[points])  # G(Q): (n, C, H, W)
    C = cost(X, images)  # (n_local, n)
    elapsed = time.perf_counter() - start
    rows = torch.arange(len(X), device=bank.points.device)
    return {**bank.round(C, rows, points, solve), "time_cost": elapsed}, images


def algorithm2_step(bank: CodeBank, x: torch.Tensor, idx: torch.Tensor, K: torch.Tensor | None,
                    generator_step: Callable[[torch.Tensor, torch.Tensor], dict], decode: Decode, cost: Cost,
                    solve) -> dict:
    """Algorithm 2, lines 6–16, for one mini-batch B (local rows ``idx``, images x):

    7: θ ← θ − η ∇ (1/m) Σ_{i∈B} ℓ(X_i, G(Ẑ_i))  (``generator_step``);
    9: the lattice subset K (:meth:`CodeBank.subsets`; None: this batch does not assign);
    10–11: C_jk ← ℓ(X_B[j], G(Q_K[k]))  (m × m);
    12: π_batch on C;
    13–16: Ẑ_B[j] ← ρ Q_K[π_batch(j)] + (1 − ρ) Ẑ_B[j].
    """
    row = generator_step(x, idx)
    if K is None:
        return row
    start = time.perf_counter()
    C = cost(x, decode(bank.points[K]))  # (m, m)
    elapsed = time.perf_counter() - start
    return {**row, **bank.round(C, idx, K, solve), "time_cost": elapsed}
