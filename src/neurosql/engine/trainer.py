"""The one epoch loop every method trains in: seeded batches, the method's steps,
the weight average, a divergence guard, validation and early stopping with the
best weights kept, atomic checkpoints, exact resume and data-parallel processes.

A method (see :class:`neurosql.methods.base.Method`) gives the trainer its checked images
(``fit`` checks them) and six calls, the last three optional:

- ``_setup(X, **fit_args)``: its networks ``networks_`` and learned state for this process's images X;
- ``_train_step(x, idx) -> dict``: one update on images ``x = X[idx]``; keys ``time_*``
  are seconds (summed over the epoch), the others per-image means (``train_loss`` first);
- ``_validation_loss(X_val) -> float``: on the epochs ``config.validate_every`` names, and the last;
- ``_begin_epoch(epoch, parts)``: per-epoch set-up (Alg. 2's lattice subsets); the epoch's generator for
  further draws is ``_epoch_generator``;
- ``_end_epoch(X, epoch, last) -> dict``: work after the epoch's updates (Alg. 1's assignment round);
- ``_after_fit(X)``: learned state from the final networks (the VAE's codes).

What else the trainer reads is declared: ``one_optimiser`` (one optimiser over every network, else one
each), ``bank_`` (a :class:`neurosql.core.code_bank.CodeBank` or None) and ``deals_bank``; the
batch size is the config's (:meth:`TrainConfig.budget`).

The trainer keeps the networks and the code bank together: it snapshots both for the best
epoch, checks both stay finite, and under torchrun deals the bank afresh every epoch when
the method declares it (Algorithm 2).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data import check_images, take
from ..errors import NeuroSQLError
from ..persistence import images_digest, restoring
from .config import resolve_device
from .distributed import device_for, init_from_environment
from .training import (EarlyStopping, EpochLog, Optimization, WeightAverage, averaged, batches, derived_seed,
                       progress_bar, seed_everything, set_rng_state, show_losses)


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


def split_validation(X: torch.Tensor, X_val, val_fraction: float, shuffle: torch.Generator):
    """Hold out a seeded ``val_fraction`` of X for early stopping, unless X_val is given.

    Returns (X_train, X_val or None, train_index) with ``train_index`` the sorted
    rows of X kept for training. Nothing is held out when the fraction rounds
    to zero images or would leave fewer than two for training.
    Shapes: X (n, C, H, W) → (n - n_val, C, H, W), (n_val, C, H, W), (n - n_val,).
    """
    if X_val is not None:
        X_val = check_images(X_val, min_count=1)  # one held-out image still validates
        if X_val.shape[1:] != X.shape[1:]:
            raise NeuroSQLError(f"validation images {tuple(X_val.shape[1:])} differ from training {tuple(X.shape[1:])}")
        return X, X_val, np.arange(len(X))
    n_val = int(round(val_fraction * len(X)))
    if n_val == 0 or len(X) - n_val < 2:
        return X, None, np.arange(len(X))
    order = torch.randperm(len(X), generator=shuffle)
    train_index = np.sort(order[n_val:].numpy())
    return take(X, train_index), X[np.sort(order[:n_val].numpy())], train_index


def _budget(method, n: int, batch_size: int | None = None):
    """The method's budget for n training images split as its shard splits them; volumes (image shape
    (C, D, H, W)) get their own update floor (:meth:`TrainConfig.budget`)."""
    return method.config.budget(n, batch_size, method._shard.n_batches, volumes=len(method.image_shape_) == 4)


def start_training(method, X, X_val, checkpoint, callback, **setup):
    """:meth:`Method.fit` on checked images X: validate the config, pick device and process shard, hold
    out validation images, resolve the budget, let the method build its networks (``_setup``), then train."""
    cfg = method.config
    cfg.validate()
    if X.shape[-1] != X.shape[-2]:
        raise NeuroSQLError(f"images must be square, got {tuple(X.shape[-2:])}; crop or resize them")
    method._shard = init_from_environment()
    method.device_ = device_for(method._shard, resolve_device(cfg.device))
    method.data_digest_ = images_digest(X)  # resume refuses other data, even of the same shape
    seed_everything(cfg.seed)
    X, X_val, method.train_index_ = split_validation(X, X_val, cfg.val_fraction, torch.Generator().manual_seed(cfg.seed))
    method._shard.check_enough_images(len(X))
    method.image_shape_ = tuple(X.shape[1:])  # (C, H, W) or (C, D, H, W)
    method.budget_ = _budget(method, len(X))
    method._local = method._shard.indices(len(X))  # this process's images
    X_local = take(X, method._local).to(method.device_)
    method.networks_ = {}
    method._setup(X_local, **setup)
    method.training_ = new_training(method)
    method.log_ = EpochLog()
    method.epochs_run_ = 0
    return _train(method, X, X_local, X_val, checkpoint, callback)


def resume_training(method, checkpoint: Path, X, X_val, epochs, steps, progress, callback):
    """:meth:`Method.continue_training` on checked images X: check they are the run's own, apply a new
    budget or display setting, restore optimisers, averages, stopping and RNGs, then train on."""
    if progress is not None:
        method.config = replace(method.config, progress=progress)
        method.config.validate()
    if images_digest(X) != method.data_digest_:
        raise NeuroSQLError(
            f"resume needs the same training data, but these images differ from the ones {checkpoint} was trained on; "
            "pass the original data"
        )
    cfg = method.config
    X_train, X_val, _ = split_validation(X, X_val, cfg.val_fraction, torch.Generator().manual_seed(cfg.seed))
    if len(X_train) != len(method.train_index_):
        raise NeuroSQLError(
            f"resume needs the same training data: the checkpoint has {len(method.train_index_)} images, got {len(X_train)}"
        )
    method._shard = init_from_environment()
    method.device_ = device_for(method._shard, method.device_)
    for net in method.networks_.values():
        net.to(method.device_)
    if epochs is not None or steps is not None:
        method.config = replace(method.config, epochs=epochs, steps=steps)
        method.config.validate()
        method.budget_ = _budget(method, len(X_train), method.budget_.batch_size)
    with restoring(checkpoint):
        method.training_ = new_training(method)
        method.training_.load_state_dict(method._saved_training)
    method._local = method._shard.indices(len(X_train))
    if method.bank_ is not None:  # this process's rows of the whole bank the checkpoint held
        method.bank_.to(method.device_)
        method.bank_.keep(method._local)
    set_rng_state(method._saved_training["rng"])
    return _train(method, X_train, take(X_train, method._local).to(method.device_), X_val, checkpoint, callback)


def new_training(method) -> Training:
    """Optimisers (one per network, the first network's first, or ``one_optimiser`` over all of them),
    weight averages, early stopping."""
    cfg, networks = method.config, list(method.networks_.values())
    groups = ([[p for net in networks for p in net.parameters()]] if method.one_optimiser
              else [list(net.parameters()) for net in networks])
    return Training(
        optimizations=[Optimization(params, cfg, method.budget_) for params in groups],
        averages=[WeightAverage(net, cfg.ema) for net in method.networks_.values()] if cfg.ema else [],
        stopping=EarlyStopping(cfg.patience, min_epoch=method.budget_.epochs // 2),
    )


def _train(method, X, X_local, X_val, checkpoint, callback):
    """The epochs, then the learned state computed from the final networks, then the last save."""
    train_epochs(method, X, X_local, X_val, checkpoint, callback)
    method.updates_ = method.training_.optimizations[0].updates
    method._after_fit(X)
    if checkpoint is not None:  # the file ends holding the model fit returns
        method.save(checkpoint)
    return method


def epoch_batches(n: int, n_parts: int, seed: int, rank: int, epoch: int) -> tuple[list[torch.Tensor], torch.Generator]:
    """This epoch's ``n_parts`` batches of ``range(n)``, and its generator for further draws.

    Seeded by (seed, rank, epoch) rather than carried along, so a resumed run
    draws exactly what an uninterrupted one would.
    """
    generator = torch.Generator().manual_seed(derived_seed(seed, rank, epoch))
    return batches(n, n_parts, generator), generator


def train_epochs(method, X_all, X, X_val, checkpoint: Path | None, callback=None) -> None:
    """Run ``method`` from epoch ``epochs_run_ + 1`` to the end of its budget or an early stop,
    then leave it with the best (or final) weights, averaged when an average is kept.

    X_all: every training image (a code bank that asks for it deals them to the processes afresh
    each epoch); X: this process's (n_local, C, H, W) on the device (or a LazyImages);
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
        if method.deals_bank and shard.active:  # points travel between the processes' problems
            method._local = method.bank_.deal(shard, cfg.seed, epoch)
            X = take(X_all, method._local).to(method.device_)
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
            if X_val is not None and (epoch % cfg.validate_every == 0 or last):
                start = time.perf_counter()
                row.update(val_loss=shard.mean(method._validation_loss(X_val), len(X_val)),
                           time_val=time.perf_counter() - start)
            if "val_loss" in row and training.stopping.update(epoch, row["val_loss"]):
                training.best = snapshot(method)
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
        final = training.best if training.best is not None else snapshot(method)
    restore(method, final)
    method._train_networks = networks


def snapshot(method) -> dict:
    """The learned state kept for the best epoch: copies of the weights and of the whole code bank."""
    state = {"networks": {name: copy.deepcopy(net.state_dict()) for name, net in method.networks_.items()}}
    if method.bank_ is not None:
        codes, perm = method.bank_.gather(method._shard)
        state.update(codes=codes.clone(), perm=perm.clone())  # the live bank keeps changing in place
    return state


def restore(method, state: dict) -> None:
    """Load a :func:`snapshot`; the whole bank is in this process from now on."""
    for name, net in method.networks_.items():
        net.load_state_dict(state["networks"][name])
    if method.bank_ is not None:
        method.bank_.keep(np.arange(method.bank_.n), state["codes"], state["perm"].numpy())
        method._local = method.bank_.local


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
    tensors += [method.bank_.codes] if method.bank_ is not None else []
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
