"""Data-parallel training with torch.distributed, launched by ``torchrun``.

Each of the ``world`` processes owns a shard of the training images and the
matching part of the code bank Ẑ. Algorithm 1's assignment is global: each
process computes its images' rows of the n × n cost, rank 0 solves the whole
problem and broadcasts π. Algorithm 2 solves its m × m problems among the lattice
points its images hold; the images (with their codes and points) are dealt
afresh to the processes every epoch, so points travel between processes. The generator's gradients are all-reduced
(DistributedDataParallel). Checkpoints
gather the bank into one array, so a saved run loads in a single process.
Backends: ``gloo`` on CPU, ``nccl`` on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..errors import NeuroSQLError


@dataclass(frozen=True)
class Shard:
    """Which part of the training set this process owns."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def indices(self, n: int) -> np.ndarray:
        """Training-image indices of this rank: every world-th one, from rank."""
        return np.arange(self.rank, n, self.world)

    def lattice_share(self, n: int, seed: int) -> np.ndarray:
        """The lattice points this rank's images ``indices(n)`` are matched to by π₀, as many as
        they, sorted: a seeded random share (the deal before the first epoch); all n in one process.

        Not a strided slice: every second point of a scrambled Sobol lattice has one coordinate of
        one sign (n = 10⁴, d = 16: mean ±0.80, std 0.60), so with two processes that coordinate
        told the processes apart rather than the images, and stayed so through training.
        """
        return self.deal(n, seed, epoch=0)

    def check_enough_images(self, n: int) -> None:
        """Refuse more processes than pairs of the n training images: each needs two, as BatchNorm
        cannot normalise one. Every rank sees the same n, so all refuse alike."""
        if n < 2 * self.world:
            raise NeuroSQLError(f"{self.world} processes need at least 2 training images each, got {n} in all; "
                                f"start at most {max(1, n // 2)} (torchrun --nproc_per_node) or train on more images")

    def n_batches(self, n: int, batch_size: int) -> int:
        """Batches per epoch, the same on every rank (DDP needs matched all-reduces)."""
        smallest = n // self.world
        # at least two images per batch: BatchNorm cannot normalise one
        return max(1, min(-(-smallest // batch_size), smallest // 2))

    def mean(self, value: float, weight: float = 1.0) -> float:
        """Weighted mean of a float over ranks (identical result on every rank)."""
        if not self.active:
            return value
        t = torch.tensor([value * weight, weight], dtype=torch.float64, device=_device())
        dist.all_reduce(t)
        return float(t[0] / t[1])

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts them before each forward, but the last training forward
        updates them locally; G in evaluation mode (costs, validation, samples)
        must be the same function on every rank.
        """
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def solve_globally(self, cost_rows: torch.Tensor, n: int, solve) -> np.ndarray:
        """One assignment of all n images to all n lattice points from every rank's cost rows.

        cost_rows: (n_local, n), the rows ``indices(n)`` of C. The rows are
        gathered, rank 0 computes π = solve(C) (n,) and broadcasts it, so every
        rank gets the same global π rather than a block-diagonal one.
        Memory: C (n, n) on every rank (all_gather).
        """
        if not self.active:
            return solve(cost_rows)
        C = self.gather_rows(cost_rows, n)  # (n, n)
        perm = np.asarray(solve(C)) if self.is_main else np.zeros(n, dtype=np.int64)
        perm = torch.as_tensor(perm, dtype=torch.int64).to(_device())
        dist.broadcast(perm, src=0)
        return perm.cpu().numpy()

    def gather_rows(self, local: torch.Tensor, n: int, rows: np.ndarray | None = None) -> torch.Tensor:
        """Assemble the full (n, ...) tensor of which each rank holds the rows ``rows`` (by default
        ``indices(n)``); each rank sends its row indices with its rows, since after
        :meth:`deal` a rank no longer holds the strided ones."""
        if not self.active:
            return local
        rows = self.indices(n) if rows is None else np.asarray(rows)
        size = -(-n // self.world)  # the largest share, strided or dealt
        padded = torch.zeros((size, *local.shape[1:]), dtype=local.dtype, device=_device())
        padded[: len(local)] = local.to(_device())
        index = torch.full((size,), -1, dtype=torch.int64, device=_device())  # -1: padding
        index[: len(rows)] = torch.as_tensor(rows, dtype=torch.int64)
        parts, indices = ([torch.empty_like(t) for _ in range(self.world)] for t in (padded, index))
        dist.all_gather(parts, padded)
        dist.all_gather(indices, index)
        full = torch.empty((n, *local.shape[1:]), dtype=local.dtype)
        for part, index in zip(parts, indices):
            held = index >= 0
            full[index[held].cpu()] = part[held].cpu()
        return full

    def gather_bank(self, codes: torch.Tensor, perm: torch.Tensor, n: int,
                    rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A code bank of which each rank holds the rows ``rows`` — codes Ẑ (n_local, d) and global
        lattice indices π (n_local,) — whole, (n, d) and (n,), on the CPU of every rank."""
        if len(codes) == n:
            return codes.cpu(), perm
        return self.gather_rows(codes, n, rows), self.gather_rows(perm, n, rows)

    def deal(self, n: int, seed: int, epoch: int) -> np.ndarray:
        """This rank's part of a fresh seeded deal of ``range(n)`` for ``epoch`` (the same on every
        rank, sizes within one of each other): sorted indices."""
        order = np.random.default_rng([seed, epoch]).permutation(n)
        return np.sort(order[self.rank :: self.world])


def _device() -> torch.device:
    """Collectives run where the backend wants them: CUDA for nccl, CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_from_environment() -> Shard:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return Shard(dist.get_rank(), dist.get_world_size())


def device_for(shard: Shard, requested: torch.device) -> torch.device:
    """On CUDA, each process drives the GPU of its LOCAL_RANK."""
    if shard.active and requested.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested
