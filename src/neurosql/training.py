"""What every training method shares: configuration, seeding, device, optimiser
with cosine warm restarts and clipping, early stopping, progress and the epoch log.

NeuroSQL and every baseline use these pieces, so budgets stay identical across
methods (paper §3.1, App. I: AdamW, cosine schedule, clipping, early stopping).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import NeuroSQLError
from .persistence import atomic_write


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A config field with its default and a one-line help (the CLI reads both)."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """The optimisation budget shared by every method (App. I, J)."""

    epochs: int = option(60, "maximum number of training epochs")
    batch_size: int = option(64, "images per generator step (paper: 32–64 for MNIST)")
    lr: float = option(2e-4, "AdamW learning rate (paper: 1e-4 to 3e-4)")
    weight_decay: float = option(1e-4, "AdamW weight decay (paper: ~1e-4)")
    grad_clip: float = option(1.0, "gradient-norm clipping threshold (paper: 1.0)")
    restart_epochs: int = option(0, "cosine warm-restart period in epochs; 0 = one cosine decay over all epochs")
    patience: int = option(25, "early stopping: epochs without validation improvement (paper: 25–30)")
    val_fraction: float = option(0.1, "fraction of training images held out for validation when none are given")
    seed: int = option(0, "random seed for initialisation, shuffling and the lattice")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    progress: bool = option(True, "show a progress bar with ETA and the current loss")

    def validate(self) -> None:
        """Raise NeuroSQLError for values no run can use."""
        for f in fields(self):
            if isinstance(f.default, (bool, int, float, str)):  # the scalar fields the CLI parses
                check_type(f.name, getattr(self, f.name), type(f.default))
        if not 0 <= self.seed <= MAX_SEED:
            raise NeuroSQLError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise NeuroSQLError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise NeuroSQLError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip <= 0 or self.restart_epochs < 0 or self.patience < 1:
            raise NeuroSQLError(
                "weight-decay and restart-epochs must be >= 0, grad-clip > 0 and patience >= 1"
            )
        if not 0 <= self.val_fraction < 1:
            raise NeuroSQLError(f"val-fraction must be in [0, 1), got {self.val_fraction}")
        resolve_device(self.device)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise NeuroSQLError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**values)


MAX_SEED = 2**32 - 1  # every RNG seeded from it (NumPy's legacy one included) takes this range
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def check_type(name: str, value: Any, kind: type) -> None:
    """Raise NeuroSQLError unless ``value`` suits a config field of type ``kind``
    (no bool for a number, no string for anything else, no NaN or Inf)."""
    if kind is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise NeuroSQLError(f"{name.replace('_', '-')} must be {TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; a named CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NeuroSQLError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuroSQLError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global RNG states as tensors and lists (safe for ``weights_only`` loading)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Optimization:
    """AdamW + cosine schedule (optionally with warm restarts) + gradient clipping.

    ``step(loss)`` does one update; the schedule advances per step, in
    fractional epochs, as ``CosineAnnealingWarmRestarts`` expects.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], cfg: TrainConfig, steps_per_epoch: int):
        self.params = [p for p in params if p.requires_grad]
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # Without restarts one period spans the run; +1 keeps its last step from wrapping to a restart.
        period = cfg.restart_epochs * steps_per_epoch or cfg.epochs * steps_per_epoch + 1
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=period, eta_min=cfg.lr * 0.01
        )
        self.updates = 0

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip, update, advance the schedule; returns the pre-clip gradient norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.updates += 1
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.updates = state["updates"]


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for ``patience`` epochs."""

    patience: int
    best: float = math.inf
    best_epoch: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record a validation value; True when it is a new best."""
        if value < self.best:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EpochLog:
    """Rows of per-epoch numbers, written as CSV (atomically) and kept in memory."""

    def __init__(self, rows: list[dict] | None = None):
        self.rows: list[dict] = list(rows or [])

    def append(self, row: dict) -> None:
        self.rows.append(row)

    def write_csv(self, path: str | Path) -> Path:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        return atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """A tqdm bar (ETA included) that callers update with the current loss."""
    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True)


def show_losses(bar: tqdm, rows: list[dict]) -> None:
    """Put the latest training loss and the latest validation loss on the bar."""
    val = next((r["val_loss"] for r in reversed(rows) if r.get("val_loss") is not None), None)
    bar.set_postfix(loss=f"{rows[-1]['train_loss']:.4f}", val="—" if val is None else f"{val:.4f}")


def batches(n: int, batch_size: int, generator: torch.Generator, n_parts: int | None = None) -> list[torch.Tensor]:
    """A fresh seeded shuffle of ``range(n)`` cut into batches (the last may be smaller),
    or into exactly ``n_parts`` near-equal batches (what data-parallel processes need)."""
    order = torch.randperm(n, generator=generator)
    if n_parts is not None:
        return list(order.tensor_split(n_parts))
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        # BatchNorm cannot normalise a batch of one image in training mode.
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts
