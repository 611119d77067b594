"""The code bank (paper §2.4–2.5, App. F's "memory bank"): the quantile lattice Q, the codes Ẑ and the
assignment π of a process's training images, and the one update both of the paper's algorithms make
to it — an assignment round on a cost matrix followed by the momentum step.

Under torchrun each process holds the rows of its images; :meth:`CodeBank.gather` assembles the
whole bank (checkpoints, the best snapshot) and :meth:`CodeBank.deal` hands the images out afresh.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .lattice import Lattice

PCA_INIT_MAX = 10_000  # largest n for the PCA-sorted π₀ (an n×n assignment)
PCA_EXACT_MAX = 5_000  # above it π₀ is solved greedily (its cost is a proxy, not the training cost)


def initial_assignment(X, Q: torch.Tensor, init: str, seed: int, solve) -> np.ndarray:
    """π₀ (Alg. 1 line 2) of images X (n, ...) to lattice points Q (n, d): a seeded random
    permutation, or (``init='pca'``) the images' standardised PCA scores matched to the lattice's
    first coordinates by squared distance (App. K's map on scores); ``solve(C, method)`` solves."""
    n = len(X)
    if init == "pca" and (n > PCA_INIT_MAX or not isinstance(X, torch.Tensor)):
        warnings.warn(f"init='pca' matches all n×n pairs; with n = {n} (> {PCA_INIT_MAX}) or data on disk "
                      "the initial assignment is random, as in Algorithm 2", stacklevel=4)
    elif init == "pca":
        flat = X.flatten(1).to("cpu" if X.device.type == "mps" else X.device, torch.float64)  # MPS has no float64
        k = min(Q.shape[1], n - 1, flat.shape[1])
        _, _, V = torch.pca_lowrank(flat, q=k, center=True, niter=4)
        scores = (flat - flat.mean(0)) @ V[:, :k]  # (n, k)
        standardise = lambda A: (A - A.mean(0)) / A.std(0).clamp_min(1e-12)
        cost = torch.cdist(standardise(scores), standardise(Q.to(flat.device, torch.float64)[:, :k])) ** 2  # (n, n)
        return solve(cost, "greedy" if n > PCA_EXACT_MAX else None)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()


@dataclass
class CodeBank:
    """Ẑ and π of this process's images, over the whole lattice Q.

    lattice: the n lattice points Q; codes: Ẑ (n_local, d) on the device; perm: π (n_local,),
    the global index of each local image's lattice point; local: the global indices of the
    images this process holds; momentum: ρ.
    """

    lattice: Lattice
    codes: torch.Tensor
    perm: np.ndarray
    local: np.ndarray
    momentum: float

    def __post_init__(self) -> None:
        self.points = self.lattice.points.to(self.codes.device)  # Q (n, d) where the codes are

    @classmethod
    def initial(cls, lattice: Lattice, local: np.ndarray, shard_perm: np.ndarray, momentum: float,
                device) -> "CodeBank":
        """Ẑ⁽⁰⁾ = Q_π₀ (Alg. 1 line 2, Alg. 2 line 2): π₀ (``shard_perm``) matches the local images
        to the local lattice points Q_local."""
        Q = lattice.points[local].to(device)  # (n_local, d)
        codes = Q[torch.as_tensor(shard_perm, device=device)].clone()
        return cls(lattice, codes, local[shard_perm], local, momentum)

    @property
    def n(self) -> int:
        return self.lattice.n

    def round(self, C: torch.Tensor, rows: torch.Tensor, points: torch.Tensor,
              solve: Callable[[torch.Tensor], np.ndarray]) -> dict[str, float]:
        """Assignment and momentum on cost C (|rows|, |points|): π(rows) = points[solve(C)], then
        Ẑ_rows ← ρ Q_π(rows) + (1 − ρ) Ẑ_rows (Alg. 1 lines 6–7, Alg. 2 lines 12–16).
        Returns the mean assigned cost, the share of rows that changed point and the solve's time."""
        start = time.perf_counter()
        choice = torch.as_tensor(solve(C), device=C.device)  # (|rows|,) a column of C per row
        elapsed = time.perf_counter() - start
        new = points[choice]
        rows_np, new_np = rows.cpu().numpy(), new.cpu().numpy()  # one device-to-host copy each
        stats = {"assign_cost": float(C[torch.arange(len(choice), device=C.device), choice].mean()),
                 "changed": float(np.mean(new_np != self.perm[rows_np])), "time_assign": elapsed}
        self.perm[rows_np] = new_np
        self.codes[rows] = self.momentum * self.points[new] + (1 - self.momentum) * self.codes[rows]
        return stats

    def subsets(self, parts: list[torch.Tensor], held: bool, generator: torch.Generator):
        """Alg. 2 line 9, the lattice subset K of each batch B in ``parts``; each point is offered once
        per epoch and π stays a permutation.

        ``held`` (the default): π(B), the points B's images hold. B is a uniform random m-subset and
        π a bijection, so K is one too, as line 9 asks; but an image keeps its point unless a
        batch-mate's fits it better, so codes settle on lattice points as in Alg. 1. Otherwise the
        parts of a fresh random partition of the points this process holds: an image's own point is
        then offered with probability m/n, codes average ever-new points and shrink (n = 600,
        m = 64: 96 % move every epoch, coordinate std 0.80 against the prior's 1), and prior samples
        fall outside what G was trained on.
        """
        if held:  # batches are disjoint: π(B) is still current when B comes
            order = torch.as_tensor(self.perm)[torch.cat(parts)]  # (n_local,)
        else:
            order = torch.as_tensor(self.perm)[torch.randperm(len(self.local), generator=generator)]
        return iter(order.to(self.codes.device).split([len(B) for B in parts]))

    def to(self, device) -> None:
        """Move the codes (and the lattice's device copy) to ``device``."""
        self.codes, self.points = self.codes.to(device), self.lattice.points.to(device)

    def gather(self, shard) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole bank, Ẑ (n, d) and π (n,), on the CPU of every process."""
        return shard.gather_bank(self.codes, torch.as_tensor(self.perm), self.n)

    def keep(self, local: np.ndarray, codes: torch.Tensor | None = None, perm=None) -> None:
        """Hold the rows ``local`` of the whole bank (``codes``, ``perm``; by default this bank's)."""
        codes = self.codes if codes is None else codes
        perm = self.perm if perm is None else np.asarray(perm)
        self.codes, self.perm, self.local = codes[local].to(self.points.device), perm[local].copy(), local

    def deal(self, shard, seed: int, epoch: int) -> np.ndarray:
        """Hand the images (with their codes and points) out afresh to the processes for ``epoch``,
        so that lattice points travel between their m×m problems; returns this process's images."""
        codes, perm = self.gather(shard)
        self.keep(shard.deal(self.n, seed, epoch), codes, perm.numpy())
        return self.local

    def state_dict(self, shard) -> dict:
        """The whole bank as a checkpoint stores it."""
        codes, perm = self.gather(shard)
        return {"lattice": self.lattice.spec(), "codes": codes, "perm": perm}

    @classmethod
    def from_state(cls, state: dict, momentum: float, device) -> "CodeBank":
        """A whole bank (one process holding every image) from :meth:`state_dict`."""
        lattice = Lattice.from_spec(state["lattice"])
        codes, perm = state["codes"].to(device), state["perm"].numpy().copy()
        return cls(lattice, codes, perm, np.arange(lattice.n), momentum)
