"""The code bank (paper §2.4–2.5, App. F's "memory bank"): the quantile lattice Q, the codes Ẑ and the
assignment π of a process's training images, and the one update both of the paper's algorithms make
to it — an assignment round on a cost matrix followed by the momentum step.

Under torchrun each process holds the rows of its images; :meth:`CodeBank.gather` assembles the
whole bank (checkpoints, the best snapshot) and :meth:`CodeBank.deal` hands the images out afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .lattice import Lattice

PCA_INIT_MAX = 5_000  # largest n for π₀ as one n×n assignment; larger sets are matched in blocks. Shifted
# digits, d = 16, mean matched cost: n = 5,000, blocks 10.5, greedy n×n 10.8, exact 9.1, random 32;
# n = 10⁴, blocks 5 % above greedy n×n, 5× faster and without its 0.8 GB matrix
PCA_FIT = 10_000  # the PCA directions are fitted on at most this many images (a seeded subsample)
PCA_BLOCK = 1_000  # images per block of the blockwise π₀
PCA_CHUNK = 4_096  # images projected at once (data on disk are read chunk by chunk)


def initial_assignment(X, Q: torch.Tensor, init: str, seed: int, solve) -> np.ndarray:
    """π₀ (Alg. 1 line 2) of images X (n, ...) to lattice points Q (n, d): a seeded random
    permutation, or (``init='pca'``) the images' standardised PCA scores matched to the lattice's
    first coordinates by squared distance (App. K's map on scores); ``solve(C, method)`` solves.
    X is a tensor or, for Algorithm 2 on an archive, a ``LazyImages`` read chunk by chunk."""
    n = len(X)
    if init != "pca":
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    device = X.device if X.device.type != "mps" else torch.device("cpu")  # MPS has no float64
    scores = _pca_scores(X, min(Q.shape[1], n - 1, int(np.prod(X.shape[1:]))), seed, device)  # (n, k)
    standardise = lambda A: (A - A.mean(0)) / A.std(0).clamp_min(1e-12)
    S, L = standardise(scores), standardise(Q.to(device, torch.float64)[:, : scores.shape[1]])
    if n <= PCA_INIT_MAX:
        return solve(torch.cdist(S, L) ** 2, None)
    return _matched_in_blocks(S, L, solve)


def _pca_scores(X, k: int, seed: int, device) -> torch.Tensor:
    """The n images' scores (n, k) on their first k principal directions, fitted on all of them or,
    above PCA_FIT images, on a seeded subsample; images are projected PCA_CHUNK at a time."""
    n = len(X)
    fit = np.arange(n) if n <= PCA_FIT else np.sort(np.random.default_rng(seed).choice(n, PCA_FIT, replace=False))
    rows = lambda idx: X[torch.as_tensor(idx, device=X.device)].flatten(1).to(device, torch.float64)
    sample = rows(fit)
    mean = sample.mean(0)
    V = torch.pca_lowrank(sample, q=k, center=True, niter=4)[2][:, :k]
    # A direction's sign is arbitrary; with its largest loading made positive, processes that fit
    # their own shard under torchrun agree (they did not: cosines of -0.99 between two halves of 10⁴ digits).
    V = V * torch.sign(V.gather(0, V.abs().argmax(dim=0, keepdim=True)))
    if n <= PCA_FIT:
        return (sample - mean) @ V
    return torch.cat([(rows(np.arange(i, min(i + PCA_CHUNK, n))) - mean) @ V for i in range(0, n, PCA_CHUNK)])


def _matched_in_blocks(S: torch.Tensor, L: torch.Tensor, solve) -> np.ndarray:
    """π₀ for more than PCA_INIT_MAX images without an n×n array: images and lattice points are
    sorted by their first (standardised) coordinate, cut into equal blocks of about PCA_BLOCK and
    matched block to block on all coordinates — exact along the first, an assignment in the rest."""
    n = len(S)
    blocks = -(-n // PCA_BLOCK)
    order_x, order_q = (np.argsort(A[:, 0].cpu().numpy(), kind="stable") for A in (S, L))
    perm = np.empty(n, dtype=np.int64)
    for bx, bq in zip(np.array_split(order_x, blocks), np.array_split(order_q, blocks)):
        cost = torch.cdist(S[torch.as_tensor(bx, device=S.device)], L[torch.as_tensor(bq, device=L.device)]) ** 2
        perm[bx] = bq[solve(cost, None)]
    return perm


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
    def initial(cls, lattice: Lattice, local: np.ndarray, points: np.ndarray, shard_perm: np.ndarray,
                momentum: float, device) -> "CodeBank":
        """Ẑ⁽⁰⁾ = Q_π₀ (Alg. 1 line 2, Alg. 2 line 2): π₀ (``shard_perm``) matches the local images
        (global indices ``local``) to the lattice points of this process, Q_points (as many)."""
        Q = lattice.points[points].to(device)  # (n_local, d)
        codes = Q[torch.as_tensor(shard_perm, device=device)].clone()
        return cls(lattice, codes, points[shard_perm], local, momentum)

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

    def redraw(self, seed: int) -> None:
        """Replace Q by a fresh lattice of the same prior (:meth:`Lattice.redrawn`) before a round: π keeps
        its point indices, whose coordinates change, and the codes move towards the new points at ρ. Every
        process draws the same lattice from the same seed."""
        self.lattice = self.lattice.redrawn(seed)
        self.points = self.lattice.points.to(self.codes.device)

    def to(self, device) -> None:
        """Move the codes (and the lattice's device copy) to ``device``."""
        self.codes, self.points = self.codes.to(device), self.lattice.points.to(device)

    def gather(self, shard) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole bank, Ẑ (n, d) and π (n,), on the CPU of every process."""
        return shard.gather_bank(self.codes, torch.as_tensor(self.perm), self.n, self.local)

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
