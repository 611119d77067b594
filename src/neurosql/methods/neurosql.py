"""The NeuroSQL estimator: fit a generator by quantile assignment (paper §2.4,
Algorithm 1), then sample, encode and reconstruct.

Symbols: ``Q`` lattice (``lattice_.points``), ``Ẑ`` codes (``codes_``),
``π`` assignment (``perm_``), ``C`` cost, ``ρ`` momentum, ``K`` assign_every.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.assignment import ASSIGNMENTS, assign, exact_solution
from ..class_sampling import check_labels, resolve_label, sample_class_codes
from ..data import check_images, check_lazy_images, take
from ..engine.distributed import Shard, device_for, init_from_environment
from ..errors import NeuroSQLError
from .base import LatentGeneratorConfig, check_count, decode_in_batches, optimise_latents, split_validation
from ..core.generators import build_generator, count_parameters
from ..core.lattice import LATTICES, Lattice, make_lattice
from ..core.losses import LOSSES, loss_per_sample, pairwise_cost
from ..persistence import images_digest, load_checkpoint, remove_temporaries, restoring, save_checkpoint
from ..engine.training import (
    Budget,
    EarlyStopping,
    EpochLog,
    Optimization,
    WeightAverage,
    batches,
    option,
    progress_bar,
    show_losses,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)

INITS = ("pca", "random")
SUBSETS = ("held", "random")  # Alg. 2's lattice subset K of a batch
PCA_INIT_MAX = 10_000  # largest n for the PCA-sorted π₀ (an n×n assignment)
VAL_LATTICE = 4096  # lattice points behind the validation loss (bounded for large n)


@dataclass
class NeuroSQLConfig(LatentGeneratorConfig):
    """Every NeuroSQL hyper-parameter, with the paper's defaults (App. I, L); the
    budget, backbone and loss fields are shared with the baselines."""

    lattice: str = option("sobol_gaussian", "quantile lattice Q and its prior", choices=LATTICES)
    assignment: str = option("exact", "assignment solver: exact (Hungarian/LAPJV) or greedy (Alg. 3)", choices=ASSIGNMENTS)
    assign_every: int = option(3, "K: solve the assignment every K epochs (paper: 2, 3 or 5); validation runs on the same "
                                  "epochs. With --assign-batch, K spaces only validation unless --no-assign-every-batch")
    momentum: float = option(0.7, "ρ in (0, 1]: weight of the new lattice point in the code update")
    init: str = option("pca", "initial assignment π₀: PCA scores matched to the lattice, or random", choices=INITS)
    cost: str = option("", "assignment cost; empty = the same as --loss (the L2 ablation uses l2)")
    assign_batch: int = option(0, "m for Algorithm 2 (mini-batch assignment, m×m costs); 0 = full batch (Alg. 1)")
    lattice_subset: str = option("held", "Alg. 2 lattice subset K of batch B: 'held' = the points π(B) its images hold "
                                          "(codes settle); 'random' = a part of a fresh random partition of the lattice "
                                          "(codes keep moving and shrink towards 0)", choices=SUBSETS)
    assign_every_batch: bool = option(True, "Alg. 2: assign in every batch, as the paper; --no-assign-every-batch "
                                            "assigns only in the batches of every K-th epoch")
    checkpoint_every: int = option(1, "epochs between checkpoints when fit writes one")

    def validate(self) -> None:
        super().validate()
        if self.assign_every < 1:
            raise NeuroSQLError(f"assign-every (K) must be >= 1, got {self.assign_every}")
        if not 0 < self.momentum <= 1:
            raise NeuroSQLError(
                f"momentum (ρ) must be in (0, 1], got {self.momentum}: ρ=1 is plain assignment, ρ=0 never moves a code"
            )
        if self.assign_batch < 0 or self.assign_batch == 1:
            raise NeuroSQLError(f"assign-batch must be 0 (full batch) or >= 2, got {self.assign_batch}")
        if self.checkpoint_every < 1:
            raise NeuroSQLError(f"checkpoint-every must be >= 1, got {self.checkpoint_every}")
        for name, valid in (("lattice", LATTICES), ("assignment", ASSIGNMENTS), ("init", INITS), ("lattice_subset", SUBSETS)):
            if getattr(self, name) not in valid:
                raise NeuroSQLError(f"unknown {name} '{getattr(self, name)}'; choose one of {', '.join(valid)}")
        if self.cost and self.cost not in LOSSES:
            raise NeuroSQLError(f"unknown cost '{self.cost}'; choose one of {', '.join(LOSSES)}")

    @property
    def cost_name(self) -> str:
        return self.cost or self.loss


class NeuroSQL:
    """Deep generative model trained by quantile assignment, with no encoder or discriminator.

    >>> model = NeuroSQL(latent_dim=16, epochs=30).fit(X)   # X: (n, C, H, W) in [0, 1]
    >>> images = model.sample(64, seed=0)

    Held-out images get codes without an encoder (:meth:`encode`): the nearest
    lattice point under the training cost ℓ, optionally refined by gradient
    descent on z with the generator frozen.
    """

    kind = "neurosql"

    def __init__(self, config: NeuroSQLConfig | None = None, **params):
        if config is not None and params:
            raise NeuroSQLError("pass either a NeuroSQLConfig or keyword parameters, not both")
        self.config = config if config is not None else NeuroSQLConfig.from_dict(params)

    # ------------------------------------------------------------------ fit
    def fit(self, X, X_val=None, checkpoint: str | Path | None = None, callback=None, labels=None) -> "NeuroSQL":
        """Algorithm 1 (or Algorithm 2 with ``assign_batch``): alternate generator
        epochs with assignments every K epochs (Alg. 2: generator steps and
        assignments alternate batch by batch).

        X: (n, C, H, W) (or (n, H, W)) images in [0, 1]. Without ``X_val`` a
        seeded ``val_fraction`` of X is held out for early stopping.
        checkpoint: a file rewritten atomically every ``checkpoint_every``
        epochs and at the end, from which :meth:`resume` continues.
        callback: called as ``callback(model, row)`` after each epoch's log row
        (e.g. to track a metric over time); its time is not in the log.
        labels: optional (n,) class of each image (ints or names); they stay
        with the training codes (``labels_``) for ``sample(m, label=c)``.
        Under ``torchrun`` every process calls fit on the same X and trains on
        its shard (see :mod:`neurosql.engine.distributed`).
        """
        cfg = self.config
        cfg.validate()
        X = self._as_images(X)
        if X.shape[-1] != X.shape[-2]:
            raise NeuroSQLError(f"images must be square, got {tuple(X.shape[-2:])}; crop or resize them")
        labels = None if labels is None else check_labels(labels, len(X))
        self._shard = init_from_environment()
        self.device_ = device_for(self._shard, resolve_device(cfg.device))
        self.data_digest_ = images_digest(X)  # resume refuses other data, even of the same shape
        seed_everything(cfg.seed)
        X, X_val, self.train_index_ = split_validation(X, X_val, cfg.val_fraction, torch.Generator().manual_seed(cfg.seed))
        self.labels_ = None if labels is None else labels[self.train_index_]  # (n,), aligned with codes_
        self.image_shape_ = tuple(X.shape[1:])  # (C, H, W)
        self.lattice_ = make_lattice(cfg.lattice, len(X), cfg.latent_dim, cfg.seed)
        self.generator_ = build_generator(
            cfg.generator, cfg.latent_dim, resolution=X.shape[-1], channels=X.shape[1], width=cfg.width or None,
            volume=len(X.shape) == 5,
        ).to(self.device_)
        self._local = self._shard.indices(len(X))  # this process's images (and lattice shard)
        X_local = take(X, self._local).to(self.device_)
        Q = self.lattice_.points[self._local].to(self.device_)  # (n_local, d)
        shard_perm = self._initial_assignment(X_local, Q)  # π₀ within this process's shard
        self.codes_ = Q[torch.as_tensor(shard_perm, device=self.device_)].clone()  # Ẑ: (n_local, d)
        self.perm_ = np.searchsorted(self._lattice_index, self._local[shard_perm])  # indices into _lattice_index
        self.budget_ = cfg.budget(len(X), cfg.assign_batch or None, self._shard.n_batches)
        self._build_optimization()
        self._best = None
        self.log_ = EpochLog()
        self.epochs_run_ = 0
        return self._train(X_local, X_val, checkpoint, callback)

    @classmethod
    def resume(cls, checkpoint: str | Path, X, X_val=None, device: str = "auto") -> "NeuroSQL":
        """Continue an interrupted :meth:`fit` from its last checkpoint, on the same data.

        Restored: weights, codes Ẑ and π, optimiser and schedule, early-stopping
        state and best snapshot, the epoch log and the global RNGs; batches and
        lattice subsets come from per-epoch generators seeded by (seed, rank,
        epoch), so the next epoch draws what the uninterrupted run would have.
        In deterministic CPU mode the result equals an uninterrupted run.
        """
        model = cls.load(checkpoint, device=device)
        checkpoint = Path(checkpoint) / "model.pt" if Path(checkpoint).is_dir() else Path(checkpoint)
        remove_temporaries(checkpoint.parent, checkpoint.name)  # left by a process killed while saving
        X = model._as_images(X)
        if model.data_digest_ is not None and images_digest(X) != model.data_digest_:
            raise NeuroSQLError(
                f"resume needs the same training data, but these images differ from the ones {checkpoint} was trained on; "
                "pass the original data"
            )
        X_train, X_val, _ = split_validation(X, X_val, model.config.val_fraction, torch.Generator().manual_seed(model.config.seed))
        if len(X_train) != model.lattice_.n:
            raise NeuroSQLError(
                f"resume needs the same training data: the checkpoint has {model.lattice_.n} images, got {len(X_train)}"
            )
        model._shard = init_from_environment()
        model.device_ = device_for(model._shard, model.device_)
        model.generator_.to(model.device_)
        model._scatter_bank(model.codes_, model.perm_)
        set_rng_state(model._rng)
        return model._train(take(X_train, model._local).to(model.device_), X_val, checkpoint)

    def _as_images(self, X):
        """Validated images: a tensor, or for Alg. 2 a numpy array (a memory map stays on disk)."""
        if isinstance(X, np.ndarray) and self.config.assign_batch:
            return check_lazy_images(X)
        return check_images(X)

    def _build_optimization(self) -> None:
        """Optimiser, weight average and early stopping for ``budget_`` (Alg. 2 steps with m images, App. F)."""
        cfg = self.config
        self._optimization = Optimization(self.generator_.parameters(), cfg, self.budget_)
        self._average = WeightAverage(self.generator_, cfg.ema) if cfg.ema else None
        self._stopping = EarlyStopping(cfg.patience, min_epoch=self.budget_.epochs // 2)

    def _epoch_batches(self, epoch: int) -> tuple[list[torch.Tensor], torch.Generator]:
        """This epoch's batches of local indices, and its generator for further draws.

        Seeded by (seed, rank, epoch) rather than carried along, so a resumed
        run draws exactly what an uninterrupted one would.
        """
        seed = int(np.random.SeedSequence([self.config.seed, self._shard.rank, epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        return batches(len(self._local), self.budget_.batch_size, generator, self.budget_.steps_per_epoch), generator

    def _train(self, X, X_val, checkpoint, callback=None) -> "NeuroSQL":
        """The epoch loop from ``epochs_run_ + 1``: train, assign every K epochs, validate, stop early.

        X: this process's (n_local, C, H, W) training images on the device.
        """
        cfg = self.config
        if X_val is not None:
            X_val = X_val[self._shard.indices(len(X_val))].to(self.device_)
        Q = self.lattice_.points[self._lattice_index].to(self.device_)  # (n, d) Alg. 1, (n_local, d) Alg. 2
        self._net = self.generator_
        if self._shard.active:
            self._net = torch.nn.parallel.DistributedDataParallel(self.generator_)
        epochs, steps = self.budget_.epochs, self.budget_.steps_per_epoch
        bar = progress_bar(epochs * steps, "NeuroSQL", cfg.progress and self._shard.is_main)
        bar.update(self.epochs_run_ * steps)
        stopped = self.epochs_run_ > 0 and self._stopping.should_stop(self.epochs_run_)
        for epoch in range(self.epochs_run_ + 1, 0 if stopped else epochs + 1):
            last = epoch == epochs
            assign_now = epoch % cfg.assign_every == 0 and not last
            if cfg.assign_batch:
                # Alg. 2 assigns in every batch of every epoch (App. F), K then counts nothing
                row = self._minibatch_epoch(X, Q, bar, epoch, assign_now or cfg.assign_every_batch)
                self._shard.sync_buffers(self.generator_)
            else:
                row = self._train_epoch(X, bar, epoch)
                self._shard.sync_buffers(self.generator_)
                self._stop_if_diverged(epoch, row["train_loss"], checkpoint, bar)  # before G(Q) feeds a cost
                if assign_now:
                    row.update(self._assignment_round(X, Q))
            row = {k: v if k in ("epoch", "lr") or k.startswith("time") else self._shard.mean(v) for k, v in row.items()}
            self._stop_if_diverged(epoch, row["train_loss"], checkpoint, bar)
            with self._averaged():  # validation and the best snapshot see the weights sampling will use
                if X_val is not None and (epoch % cfg.assign_every == 0 or last):
                    row.update(self._validate(X_val))
                if "val_loss" in row and self._stopping.update(epoch, row["val_loss"]):
                    self._best = self._snapshot()
            self.log_.append(row)
            if callback is not None:
                callback(self, row)
            self.epochs_run_ = epoch
            show_losses(bar, self.log_.rows)
            stop = self._stopping.should_stop(epoch)
            if checkpoint is not None and (epoch % cfg.checkpoint_every == 0 or last or stop):
                self.save(checkpoint)
            if stop:
                break
        bar.close()
        with self._averaged():
            snapshot = self._best if self._best is not None else self._snapshot()
        self.generator_.load_state_dict(snapshot["generator"])
        self.codes_, self.perm_ = snapshot["codes"].to(self.device_), snapshot["perm"].numpy().copy()
        self._local = np.arange(self.lattice_.n)  # the whole bank is here now
        return self

    def _averaged(self):
        """Context in which the generator holds its weight average (a no-op without one)."""
        return self._average.applied() if self._average is not None else contextlib.nullcontext()

    def _stop_if_diverged(self, epoch: int, loss: float, checkpoint, bar) -> None:
        """Raise when the loss or the weights and codes are not finite (an update can poison
        the weights while the loss it saw was finite); called before the epoch's save, so a
        checkpoint on disk always holds finite weights."""
        tensors = [*self.generator_.parameters(), *self.generator_.buffers(), self.codes_]
        finite = all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
        if math.isfinite(loss) and finite:
            return
        bar.close()
        kept = f"; the last good checkpoint is {checkpoint}" if checkpoint and Path(checkpoint).is_file() else ""
        what = f"loss {loss}" if not math.isfinite(loss) else "weights or codes became NaN or Inf"
        raise NeuroSQLError(f"training diverged at epoch {epoch} ({what}){kept}; lower --lr")

    @property
    def _lattice_index(self) -> np.ndarray:
        """Global indices of the lattice points that π (``perm_``) indexes here: all of them
        for Alg. 1, whose assignment is global; this process's shard for Alg. 2."""
        return self._local if self.config.assign_batch else np.arange(self.lattice_.n)

    def _gather_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes Ẑ (n, d) and global lattice indices π (n,) of all training images, on the CPU."""
        n = self.lattice_.n
        global_perm = torch.as_tensor(self._lattice_index[self.perm_])
        if len(self._local) == n:
            return self.codes_.cpu(), global_perm
        return self._shard.gather_rows(self.codes_, n), self._shard.gather_rows(global_perm, n)

    def _scatter_bank(self, codes: torch.Tensor, perm: np.ndarray) -> None:
        """Keep this process's part of a full bank; π becomes indices into ``_lattice_index``."""
        self._local = self._shard.indices(self.lattice_.n)
        position = {int(g): i for i, g in enumerate(self._lattice_index)}
        own = perm[self._local]
        # With another world size a code's lattice point may sit on another rank:
        # the code keeps its value, π restarts from the identity there.
        self.perm_ = np.array([position.get(int(g), i) for i, g in enumerate(own)], dtype=np.int64)
        self.codes_ = codes[self._local].to(self.device_)

    def _initial_assignment(self, X, Q) -> np.ndarray:
        """π₀: random, or the data's PCA scores matched to the lattice (App. K's map on scores)."""
        n, d = len(X), self.config.latent_dim
        if self.config.init == "pca" and (n > PCA_INIT_MAX or not isinstance(X, torch.Tensor)):
            warnings.warn(f"init='pca' matches all n×n pairs; with n = {n} (> {PCA_INIT_MAX}) or data on disk "
                          "the initial assignment is random, as in Algorithm 2", stacklevel=3)
        elif self.config.init == "pca":
            return self._pca_assignment(X, Q)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed)).numpy()

    def _pca_assignment(self, X, Q) -> np.ndarray:
        """Standardised PCA scores of the images matched to the lattice by squared distance."""
        n, d = len(X), self.config.latent_dim
        flat = X.flatten(1).double()
        k = min(d, n - 1, flat.shape[1])
        _, _, V = torch.pca_lowrank(flat, q=k, center=True, niter=4)
        scores = (flat - flat.mean(0)) @ V[:, :k]  # (n, k)
        Q = Q.double()[:, :k]
        standardise = lambda A: (A - A.mean(0)) / A.std(0).clamp_min(1e-12)
        cost = torch.cdist(standardise(scores), standardise(Q)) ** 2  # (n, n)
        return assign(cost, "exact" if n <= 5000 else "greedy")

    def _generator_step(self, x, z) -> float:
        """One regression step of X on its codes (Alg. 1 step 4, Alg. 2 line 7)."""
        loss = loss_per_sample(self._net(z), x, self.config.loss).mean()  # DDP all-reduces the gradients
        self._optimization.step(loss)
        if self._average is not None:
            self._average.update()
        return float(loss.detach())

    def _train_epoch(self, X, bar, epoch) -> dict:
        """Decoder step of Alg. 1: one pass of regression of X on its codes Ẑ."""
        start = time.perf_counter()
        self.generator_.train()
        total = 0.0
        for idx in self._epoch_batches(epoch)[0]:
            idx = idx.to(X.device)
            total += self._generator_step(X[idx], self.codes_[idx]) * len(idx)
            bar.update(1)
        return {
            "epoch": epoch,
            "train_loss": total / len(X),
            "lr": self._optimization.lr,
            "time_generator": time.perf_counter() - start,
        }

    def _assignment_round(self, X, Q) -> dict:
        """Steps 5–7 of Alg. 1: cost C = ℓ(X, G(Q)), assignment π, momentum update of Ẑ.

        X: this process's images (n_local, ...), Q: the whole lattice (n, d); under
        torchrun the processes' cost rows form one global problem (Shard.solve_globally).
        """
        cfg = self.config
        start = time.perf_counter()
        C = pairwise_cost(X, self.decode(Q, to_cpu=False), cfg.cost_name)  # (n_local, n)
        row = {"time_cost": time.perf_counter() - start}
        start = time.perf_counter()
        perm = self._shard.solve_globally(C, len(Q), self._solve)[self._local]  # (n_local,)
        row["time_assign"] = time.perf_counter() - start
        index = torch.as_tensor(perm, device=Q.device)
        row["assign_cost"] = float(C[torch.arange(len(perm), device=C.device), index].mean())
        row["changed"] = float(np.mean(perm != self.perm_))
        self.perm_ = perm
        self.codes_ = cfg.momentum * Q[index] + (1 - cfg.momentum) * self.codes_
        return row

    def _solve(self, C) -> np.ndarray:
        """π for a full cost matrix C (n, n) with the configured solver."""
        if self.config.assignment == "exact":
            # warm start from the last round's prices: consecutive cost matrices are alike
            self._solution = exact_solution(C, warm_start=getattr(self, "_solution", None))
            return self._solution.perm
        return assign(C, self.config.assignment)

    def _minibatch_epoch(self, X, Q, bar, epoch, assign_now: bool) -> dict:
        """Alg. 2 (App. F): per mini-batch B of size m, a generator step, then (in
        assignment epochs) an m×m assignment against a lattice subset K and the
        sparse momentum update of Ẑ_B.

        K ("held", the default): π(B), the points B's images hold. B is a uniform
        random m-subset and π a bijection, so K is one too, as line 9 asks; but an
        image keeps its point unless a batch-mate's fits it better, so codes settle
        on lattice points as in Alg. 1. K ("random"): the parts of a fresh random
        partition of the lattice; an image's own point is then offered with
        probability m/n, codes average ever-new points and shrink (n = 600, m = 64:
        96 % move every epoch, coordinate std 0.80 against the prior's 1), and
        prior samples fall outside what G was trained on. Either way each lattice
        point is offered once per epoch, π stays a permutation, costs are m×m.
        """
        cfg = self.config
        times = {"time_generator": 0.0, "time_cost": 0.0, "time_assign": 0.0}
        total, matched, changed = 0.0, 0.0, 0
        parts, generator = self._epoch_batches(epoch)
        if cfg.lattice_subset == "held":  # batches are disjoint: π(B) is still current when B comes
            lattice_order = torch.as_tensor(self.perm_)[torch.cat(parts)].to(X.device)  # (n_local,)
        else:
            lattice_order = torch.randperm(len(X), generator=generator).to(X.device)  # (n_local,)
        offset = 0
        for B in parts:
            B = B.to(X.device)
            start = time.perf_counter()
            self.generator_.train()
            xb = X[B]  # (m, C, H, W), read once (lazily from disk for LazyImages)
            total += self._generator_step(xb, self.codes_[B]) * len(B)
            times["time_generator"] += time.perf_counter() - start
            bar.update(1)
            if not assign_now:
                continue
            K = lattice_order[offset : offset + len(B)]  # (m,)
            offset += len(B)
            start = time.perf_counter()
            C = pairwise_cost(xb, self.decode(Q[K], to_cpu=False), cfg.cost_name)  # (m, m)
            times["time_cost"] += time.perf_counter() - start
            start = time.perf_counter()
            local = torch.as_tensor(assign(C, cfg.assignment), device=X.device)
            times["time_assign"] += time.perf_counter() - start
            new = K[local]
            matched += float(C[torch.arange(len(B), device=C.device), local].sum())
            rows, points = B.cpu().numpy(), new.cpu().numpy()  # one device-to-host copy each
            changed += int((points != self.perm_[rows]).sum())
            self.perm_[rows] = points
            self.codes_[B] = cfg.momentum * Q[new] + (1 - cfg.momentum) * self.codes_[B]
        row = {"epoch": epoch, "train_loss": total / len(X), "lr": self._optimization.lr, **times}
        if assign_now:
            row.update(assign_cost=matched / len(X), changed=changed / len(X))
        else:
            del row["time_cost"], row["time_assign"]
        return row

    def _validate(self, X_val) -> dict:
        """Validation ℓ: each held-out image against its nearest image among G(Q_S),
        S a fixed seeded subset of at most VAL_LATTICE lattice points (all when n is smaller);
        averaged over the processes' shares of the validation images."""
        start = time.perf_counter()
        Q = self.lattice_.points
        if len(Q) > VAL_LATTICE:
            Q = Q[torch.randperm(len(Q), generator=torch.Generator().manual_seed(self.config.seed))[:VAL_LATTICE]]
        loss = pairwise_cost(X_val, self.decode(Q, to_cpu=False), self.config.loss).min(dim=1).values.mean()
        return {"val_loss": self._shard.mean(float(loss), len(X_val)), "time_val": time.perf_counter() - start}

    def _snapshot(self) -> dict:
        """Weights and the whole bank (Ẑ, global π), as kept for the best epoch and restored at the end."""
        codes, perm = self._gather_bank()
        return {"generator": copy.deepcopy(self.generator_.state_dict()), "codes": codes, "perm": perm}

    # ------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "generator_"):
            raise NeuroSQLError("this NeuroSQL model is not fitted yet; call fit(X) or NeuroSQL.load(path)")

    @torch.no_grad()
    def decode(self, z, batch_size: int = 512, to_cpu: bool = True) -> torch.Tensor:
        """G(z) in evaluation mode, in batches: (m, d) codes → (m, C, H, W) images."""
        self._check_fitted()
        return decode_in_batches(self.generator_, z, self.device_, batch_size, to_cpu)

    def sample_latent(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m codes z (m, d) drawn from the lattice's prior; a seed makes them reproducible."""
        self._check_fitted()
        check_count(m)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return self.lattice_.sample_prior(m, generator)

    def sample(self, m: int, seed: int | None = None, label=None) -> torch.Tensor:
        """m new images G(z), z drawn from the lattice's prior; a seed makes them reproducible.

        With ``label``, only draws whose 5 nearest training codes vote for that
        class are kept (see :mod:`neurosql.class_sampling`); needs a model
        fitted with labels.
        """
        if label is None:
            return self.decode(self.sample_latent(m, seed))
        self._check_fitted()
        if m < 1:
            raise NeuroSQLError(f"number of samples must be >= 1, got {m}")
        label = resolve_label(label, self.classes_)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        z = sample_class_codes(lambda count: self.lattice_.sample_prior(count, generator), self.codes_, self.labels_, label, m)
        return self.decode(z)

    @property
    def classes_(self) -> list | None:
        """The distinct training labels, sorted; None when fitted without labels."""
        self._check_fitted()
        return None if self.labels_ is None else np.unique(self.labels_).tolist()

    def encode(self, X, refine_steps: int = 0, lr: float = 0.05) -> torch.Tensor:
        """Codes for images without an encoder: the lattice point whose image is
        nearest under ℓ, then optionally ``refine_steps`` Adam steps on z minimising ℓ."""
        self._check_fitted()
        X = check_images(X).to(self.device_)
        Q = self.lattice_.points.to(self.device_)
        z = Q[pairwise_cost(X, self.decode(Q, to_cpu=False), self.config.loss).argmin(dim=1)].clone()
        if refine_steps > 0:
            z = optimise_latents(self.generator_, X, z, refine_steps, lr, self.config.loss)
        return z.cpu()

    def reconstruct(self, X=None, refine_steps: int = 0) -> torch.Tensor:
        """G(Ẑ) for the training images (X=None, in ``train_index_`` order), or G(encode(X))."""
        self._check_fitted()
        codes = self.codes_ if X is None else self.encode(X, refine_steps)
        return self.decode(codes)

    @property
    def updates_(self) -> int:
        """Generator updates so far (the budget unit shared with the baselines)."""
        return self._optimization.updates

    @property
    def prior(self) -> str:
        """Name of the latent prior (see ``Lattice.prior``)."""
        self._check_fitted()
        return self.lattice_.prior

    @property
    def n_parameters(self) -> int:
        self._check_fitted()
        return count_parameters(self.generator_)

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Everything needed to sample and to resume: config, weights, lattice, codes, optimiser, RNG.

        Under torchrun every process must call it (the bank is gathered); the main one writes.
        """
        self._check_fitted()
        codes, perm = self._gather_bank()
        if not self._shard.is_main:
            return Path(path)
        state = {
            "kind": self.kind,
            "config": self.config.to_dict(),
            "generator_config": self.generator_.config,
            "generator": self.generator_.state_dict(),
            "lattice": self.lattice_.spec(),
            "image_shape": list(self.image_shape_),
            "codes": codes,
            "perm": perm,
            "labels": None if self.labels_ is None else self.labels_.tolist(),
            "train_index": torch.as_tensor(self.train_index_),
            "data_digest": self.data_digest_,
            "log": self.log_.rows,
            "epochs_run": self.epochs_run_,
            "budget": vars(self.budget_),
            "optimization": self._optimization.state_dict(),
            "average": None if self._average is None else self._average.state_dict(),
            "early_stopping": self._stopping.state_dict(),
            "best": self._best,
            "rng": rng_state(),
        }
        return save_checkpoint(state, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "NeuroSQL":
        """Rebuild a saved model; ``device`` overrides where it runs."""
        state = load_checkpoint(path, cls.kind)
        with restoring(path):
            return cls._restore(state, device)

    @classmethod
    def _restore(cls, state: dict, device: str) -> "NeuroSQL":
        config = NeuroSQLConfig.from_dict({**state["config"], "device": device})
        model = cls(config)
        model.device_ = resolve_device(device)
        model.generator_ = build_generator(**state["generator_config"]).to(model.device_)
        model.generator_.load_state_dict(state["generator"])
        model.lattice_ = Lattice.from_spec(state["lattice"])
        model.image_shape_ = tuple(state["image_shape"])
        model.codes_ = state["codes"].to(model.device_)
        model.labels_ = None if state.get("labels") is None else np.asarray(state["labels"])
        model.perm_ = state["perm"].numpy()
        model.train_index_ = state["train_index"].numpy()
        model.data_digest_ = state.get("data_digest")  # None in checkpoints written before it was recorded
        model.log_ = EpochLog(state["log"])
        model.epochs_run_ = state["epochs_run"]
        model._shard = Shard()
        # checkpoints of release 0.1 carry no budget: theirs was the configured epochs and batch
        model.budget_ = Budget(**state["budget"]) if "budget" in state else config.budget(model.lattice_.n, config.assign_batch or None, model._shard.n_batches)
        model._build_optimization()
        model._optimization.load_state_dict(state["optimization"])
        if model._average is not None and state.get("average"):
            model._average.load_state_dict(state["average"])
        model._stopping.load_state_dict(state["early_stopping"])
        model._best = state["best"]
        model._local = np.arange(model.lattice_.n)
        model._rng = state["rng"]
        return model
