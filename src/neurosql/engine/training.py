"""What every training method shares: seeding, optimiser
with cosine warm restarts and clipping, early stopping, progress and the epoch log.

NeuroSQL and every baseline use these pieces, so budgets stay identical across
methods (paper §3.1, App. I: AdamW, cosine schedule, clipping, early stopping).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import autonotebook
from tqdm.auto import tqdm
from tqdm.std import tqdm as console_tqdm

from .config import Budget, TrainConfig
from ..persistence import write_text


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*keys: int) -> int:
    """A 32-bit seed derived from ``keys`` (the run's seed, then e.g. the rank and the epoch), so that a
    draw seeded by it is the same in a resumed run and on every process that shares the keys."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


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


def lr_factor(update: int, budget: Budget, warmup: float, restart_epochs: int = 0) -> float:
    """The learning-rate multiplier before update ``update`` (0-based): a linear warm-up over
    ``warmup`` of the updates, then cosine decay to 1 % (restarting every ``restart_epochs``)."""
    warm = int(round(warmup * budget.steps))
    if update < warm:
        return (update + 1) / warm
    period = restart_epochs * budget.steps_per_epoch or budget.steps - warm
    t = ((update - warm) % period) / period if period > 0 else 0.0
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))


class Optimization:
    """AdamW + warm-up and cosine schedule (optionally with warm restarts) + gradient clipping.

    ``step(loss)`` does one update at the scheduled rate (:func:`lr_factor`);
    the schedule is a function of the update count, so only that count needs saving.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], cfg: TrainConfig, budget: Budget):
        self.params = [p for p in params if p.requires_grad]
        self.cfg = cfg
        self.budget = budget
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.updates = 0

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip, update at the scheduled rate; returns the pre-clip gradient norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr * lr_factor(self.updates, self.budget, self.cfg.warmup, self.cfg.restart_epochs)
        self.optimizer.step()
        self.updates += 1
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]


class WeightAverage:
    """Exponential moving average of a module's parameters, as GANs and diffusion models
    sample from: w̄ ← β_t·w̄ + (1 − β_t)·w after each update, with β_t = min(β, (1 + t)/(10 + t))
    so that the average forgets its start on short runs. Buffers (BatchNorm statistics) are
    the module's own: data-parallel ranks synchronise those, and the average stays identical.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module, self.decay = module, decay
        self.updates = 0
        self.average = {k: v.detach().clone() for k, v in module.named_parameters()}

    @torch.no_grad()
    def update(self) -> None:
        beta = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in self.module.named_parameters():
            self.average[key].lerp_(value, 1 - beta)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """Within the block the module holds the averaged parameters; its own are restored after."""
        own = {k: v.detach().clone() for k, v in self.module.named_parameters()}
        self.module.load_state_dict(self.average, strict=False)
        try:
            yield self.module
        finally:
            self.module.load_state_dict(own, strict=False)

    def state_dict(self) -> dict:
        return {"average": self.average, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.average = {k: v.to(self.average[k].device) for k, v in state["average"].items()}
        self.updates = state["updates"]


@contextlib.contextmanager
def averaged(averages: Iterable[WeightAverage]):
    """Every module of ``averages`` holds its averaged weights within the block."""
    with contextlib.ExitStack() as stack:
        for average in averages:
            stack.enter_context(average.applied())
        yield


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved for ``patience`` epochs, and
    never before ``min_epoch``: the first half of a cosine schedule runs at high
    rates, where a small validation set's noise should not end the run.

    ``patience`` None turns it off: the whole budget runs and no best epoch is kept.
    Off is the default because the validation loss (a held-out image against its
    nearest generated image) bottoms out long before the samples stop improving:
    on the small sets of ``benchmarks/small_data.py`` the best-validation weights
    gave a worse held-out pFID than the final ones.
    """

    patience: int | None
    min_epoch: int = 0
    best: float = math.inf
    best_epoch: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record a validation value; True when it is a new best whose weights should be kept."""
        if value < self.best:
            self.best, self.best_epoch = value, epoch
            return self.patience is not None
        return False

    def should_stop(self, epoch: int) -> bool:
        """Whether to stop after ``epoch``; never when off, nor before a first validation value
        (a run without validation images trains its whole budget)."""
        seen = self.best_epoch > 0
        return (self.patience is not None and seen and epoch >= self.min_epoch
                and epoch - self.best_epoch >= self.patience)

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
        return write_text(path, buffer.getvalue())


class EpochLines:
    """The progress bar's stand-in where stderr is a file or a pipe (cluster logs): one plain line
    per epoch (per ``set_postfix``) instead of a bar redrawn with carriage returns."""

    def __init__(self, total: int, desc: str, stream=None):
        self.total, self.desc, self.stream, self.n = total, desc, stream or sys.stderr, 0
        self.start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        elapsed = time.perf_counter() - self.start
        shown = ", ".join(f"{key} {value}" for key, value in values.items())
        print(f"{self.desc}: {self.n}/{self.total} updates ({100 * self.n / max(self.total, 1):.0f} %), "
              f"{elapsed:.0f} s; {shown}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm | EpochLines:
    """A tqdm bar (ETA included) that callers update with the current loss; plain lines when
    stderr is not a terminal (see :class:`EpochLines`), except in a notebook, whose bar is a widget."""
    if enabled and not sys.stderr.isatty() and autonotebook.tqdm is console_tqdm:  # tqdm.auto's choice
        return EpochLines(total, desc)
    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=True)


def show_losses(bar: tqdm | EpochLines, rows: list[dict]) -> None:
    """Put the epoch, the latest training loss and the latest validation loss on the bar."""
    val = next((r["val_loss"] for r in reversed(rows) if r.get("val_loss") is not None), None)
    bar.set_postfix(epoch=rows[-1]["epoch"], loss=f"{rows[-1]['train_loss']:.4f}", val="—" if val is None else f"{val:.4f}")


def batches(n: int, n_parts: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A fresh seeded shuffle of ``range(n)`` cut into ``n_parts`` near-equal batches: every
    epoch has the same number of updates, and no batch is a single image (BatchNorm cannot
    normalise one) while n >= 2 n_parts, which :meth:`Shard.n_batches` ensures."""
    return list(torch.randperm(n, generator=generator).tensor_split(n_parts))
