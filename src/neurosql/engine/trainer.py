"""The one epoch loop every method trains in: seeded batches, the method's steps,
the weight average, a divergence guard, validation and early stopping with the
best weights kept, atomic checkpoints, exact resume and data-parallel processes.

A method (see :class:`neurosql.methods.base.Method`) supplies only its part:

- ``_epoch_shard(epoch)``: this process's images when they change (Alg. 2 under torchrun), else None;
- ``_begin_epoch(epoch, parts)``: per-epoch set-up (Alg. 2's lattice subsets); the epoch's generator for
  further draws is ``_epoch_generator``;
- ``_train_step(x, idx) -> dict``: one update on images ``x = X[idx]``; keys ``time_*``
  are seconds (summed over the epoch), the others per-image means (``train_loss`` first);
- ``_end_epoch(X, epoch, last) -> dict``: work after the epoch's updates (Alg. 1's assignment round);
- ``_validates(epoch, last)`` and ``_validation_loss(X_val)``;
- ``_snapshot()`` / ``_restore(snapshot)``: the learned state kept for the best epoch;
- ``save(path)``, ``networks_``, ``training_`` (:class:`Training`), ``budget_``, ``_shard``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import take
from ..errors import NeuroSQLError
from .training import EarlyStopping, Optimization, WeightAverage, averaged, batches, progress_bar, show_losses


@dataclass
class Training:
    """Everything besides the learned state that an exact resume needs."""

    optimizations: list[Optimization]  # the first one steps the generator (or the denoiser)
    averages: list[WeightAverage]  # one per network when weights are averaged, else none
    stopping: EarlyStopping
    best: dict | None = None  # the learned state of the best validation epoch

    def state_dict(self) -> dict:
        return {
            "optimizations": [o.state_dict() for o in self.optimizations],
            "averages": [a.state_dict() for a in self.averages],
            "early_stopping": self.stopping.state_dict(),
            "best": self.best,
        }

    def load_state_dict(self, state: dict) -> None:
        for optimization, saved in zip(self.optimizations, state["optimizations"], strict=True):
            optimization.load_state_dict(saved)
        for average, saved in zip(self.averages, state["averages"]):
            average.load_state_dict(saved)
        self.stopping.load_state_dict(state["early_stopping"])
        self.best = state["best"]


def epoch_batches(n: int, n_parts: int, seed: int, rank: int, epoch: int) -> tuple[list[torch.Tensor], torch.Generator]:
    """This epoch's ``n_parts`` batches of ``range(n)``, and its generator for further draws.

    Seeded by (seed, rank, epoch) rather than carried along, so a resumed run
    draws exactly what an uninterrupted one would.
    """
    state = int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(state)
    return batches(n, n_parts, generator), generator


def train_epochs(method, X_all, X, X_val, checkpoint: Path | None, callback=None) -> None:
    """Run ``method`` from epoch ``epochs_run_ + 1`` to the end of its budget or an early stop,
    then leave it with the best (or final) weights, averaged when an average is kept.

    X_all: every training image (a method may deal them to the processes afresh each epoch,
    ``_epoch_shard``); X: this process's (n_local, C, H, W) on the device (or a LazyImages);
    X_val: the validation images (this process's share is taken here) or None.
    """
    cfg, training, shard = method.config, method.training_, method._shard
    networks = method.networks_
    if X_val is not None:
        X_val = X_val[shard.indices(len(X_val))].to(method.device_)
    method._train_networks = {name: _parallel(net, shard) for name, net in networks.items()}
    epochs, steps = method.budget_.epochs, method.budget_.steps_per_epoch
    bar = progress_bar(epochs * steps, method.kind.upper() if method.kind != "neurosql" else "NeuroSQL",
                       cfg.progress and shard.is_main)
    bar.update(method.epochs_run_ * steps)
    stopped = method.epochs_run_ > 0 and training.stopping.should_stop(method.epochs_run_)
    for epoch in range(method.epochs_run_ + 1, 0 if stopped else epochs + 1):
        last = epoch == epochs
        dealt = method._epoch_shard(epoch)
        if dealt is not None:
            X = take(X_all, dealt).to(method.device_)
        try:
            row = _train_one_epoch(method, X, epoch, bar)
        except RuntimeError as exc:  # e.g. an lr of 1e300 overflows float32 inside the optimiser
            if "overflow" not in str(exc):
                raise
            _diverged(method, epoch, "an update overflowed", checkpoint, bar)
        _stop_if_diverged(method, epoch, row["train_loss"], checkpoint, bar)  # before G(Q) feeds a cost
        row.update(method._end_epoch(X, epoch, last))
        row = {k: v if k in ("epoch", "lr") or k.startswith("time") else shard.mean(v) for k, v in row.items()}
        _stop_if_diverged(method, epoch, row["train_loss"], checkpoint, bar)
        with averaged(training.averages):  # validation and the best snapshot see the weights sampling will use
            if X_val is not None and method._validates(epoch, last):
                start = time.perf_counter()
                row.update(val_loss=shard.mean(method._validation_loss(X_val), len(X_val)),
                           time_val=time.perf_counter() - start)
            if "val_loss" in row and training.stopping.update(epoch, row["val_loss"]):
                training.best = method._snapshot()
        method.log_.append(row)
        if callback is not None:
            callback(method, row)
        method.epochs_run_ = epoch
        show_losses(bar, method.log_.rows)
        stop = training.stopping.should_stop(epoch)
        if checkpoint is not None and (epoch % cfg.checkpoint_every == 0 or last or stop):
            method.save(checkpoint)
        if stop:
            break
    bar.close()
    with averaged(training.averages):
        final = training.best if training.best is not None else method._snapshot()
    method._restore(final)
    method._train_networks = networks


def _parallel(net: torch.nn.Module, shard) -> torch.nn.Module:
    """The module training steps call: wrapped for gradient all-reduce under torchrun."""
    if shard.active and any(p.requires_grad for p in net.parameters()):
        return torch.nn.parallel.DistributedDataParallel(net)
    return net


def _train_one_epoch(method, X, epoch: int, bar) -> dict:
    """The method's steps over this epoch's batches, with the weight averages updated after each."""
    start = time.perf_counter()
    parts, generator = epoch_batches(len(X), method.budget_.steps_per_epoch, method.config.seed,
                                     method._shard.rank, epoch)
    method._epoch_generator = generator  # the epoch's further draws (subsets, augmentations) come from it too
    method._begin_epoch(epoch, parts)
    for net in method.networks_.values():
        net.train()
    totals: dict[str, float] = {}
    for idx in parts:
        idx = idx.to(X.device)
        for key, value in method._train_step(X[idx], idx).items():
            weight = 1 if key.startswith("time_") else len(idx)
            totals[key] = totals.get(key, 0.0) + value * weight
        for average in method.training_.averages:
            average.update()
        bar.update(1)
    for net in method.networks_.values():
        method._shard.sync_buffers(net)
    row = {"epoch": epoch}
    row.update({k: v if k.startswith("time_") else v / len(X) for k, v in totals.items()})
    other = sum(v for k, v in totals.items() if k.startswith("time_"))
    row.update(lr=method.training_.optimizations[0].lr, time_generator=time.perf_counter() - start - other)
    return row


def _stop_if_diverged(method, epoch: int, loss: float, checkpoint, bar) -> None:
    """Raise when the loss or the learned tensors are not finite (an update can poison the
    weights while the loss it saw was finite); called before the epoch's save, so a
    checkpoint on disk always holds finite weights."""
    tensors = [t for net in method.networks_.values() for t in (*net.parameters(), *net.buffers())]
    tensors += method._learned_tensors()
    finite = all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
    if math.isfinite(loss) and finite:
        return
    _diverged(method, epoch, f"loss {loss}" if not math.isfinite(loss) else "weights or codes became NaN or Inf",
              checkpoint, bar)


def _diverged(method, epoch: int, what: str, checkpoint, bar) -> None:
    """Raise the one divergence error, naming the last good checkpoint when there is one."""
    bar.close()
    kept = f"; the last good checkpoint is {checkpoint}" if checkpoint and Path(checkpoint).is_file() else ""
    raise NeuroSQLError(f"{method.kind} training diverged at epoch {epoch} ({what}){kept}; lower --lr")
