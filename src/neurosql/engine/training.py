"""What every training method shares: configuration, seeding, device, optimiser
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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import autonotebook
from tqdm.auto import tqdm
from tqdm.std import tqdm as console_tqdm

from ..errors import NeuroSQLError
from .augment import parse_augmentations
from .config import MAX_SEED, check_config, option
from ..persistence import write_text


# The automatic budget (issue 10; measurements in benchmarks/small_data.md): small data sets need
# far more passes than the paper's epoch counts give them, large ones fewer.
# smallest and largest automatic batch size: at 2,000 updates batch 16 beat 64 on 1,000-3,500 digits
AUTO_BATCH = (8, 16)
AUTO_BATCH_DIVISOR = 16  # automatic batch ≈ n / 16, so an epoch is at least ~16 updates
AUTO_EPOCHS = 30  # automatic budget: this many epochs ...
AUTO_STEPS = (2000, 20000)  # ... but at least / at most this many generator updates
PRESETS = {
    # App. I: AdamW at 2e-4, batch 64, cosine decay, 120–250 epochs, no warm-up, no weight averaging,
    # early stopping with patience 25–30; samples z from the prior (§2.5). A method applies the fields it has.
    "paper": {"epochs": 120, "batch_size": 64, "lr": 2e-4, "warmup": 0.0, "ema": 0.0, "patience": 25,
              "sampler": "prior"},
}


@dataclass(frozen=True)
class Budget:
    """A run's resolved budget: ``epochs`` passes of ``steps_per_epoch`` updates of ``batch_size`` images."""

    batch_size: int
    steps_per_epoch: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class TrainConfig:
    """The optimisation budget shared by every method (App. I, J)."""

    epochs: int | None = option(None, "training epochs; None = auto, see steps", type=int, within="[1, inf)",
                                hint="or omit it for the automatic budget")
    steps: int | None = option(None, f"budget in generator updates, rounded up to whole epochs; None (with epochs "
                                     f"None) = auto: {AUTO_EPOCHS} epochs, at least {AUTO_STEPS[0]} and at most "
                                     f"{AUTO_STEPS[1]} updates", type=int, within="[1, inf)",
                               hint="or omit it for the automatic budget")
    batch_size: int | None = option(None, f"images per generator step; None = auto: n/{AUTO_BATCH_DIVISOR} rounded "
                                          f"down to a power of two in [{AUTO_BATCH[0]}, {AUTO_BATCH[1]}]", type=int,
                                    within="[1, inf)", hint="or omit it for the automatic batch size")
    lr: float = option(2e-3, "peak AdamW learning rate (paper: 1e-4 to 3e-4 over 120–250 epochs: --preset paper)",
                       within="(0, inf)")
    warmup: float = option(0.05, "fraction of the updates over which the learning rate rises linearly from 0",
                           within="[0, 1)")
    ema: float = option(0.999, "decay of the moving average of the weights that sampling uses; 0 = off", within="[0, 1)")
    weight_decay: float = option(1e-4, "AdamW weight decay (paper: ~1e-4)", within="[0, inf)")
    grad_clip: float = option(1.0, "gradient-norm clipping threshold (paper: 1.0)", within="(0, inf)")
    restart_epochs: int = option(0, "cosine warm-restart period in epochs; 0 = one cosine decay over all epochs",
                                 within="[0, inf)")
    patience: int | None = option(None, "early stopping: stop after this many epochs without validation "
                                        "improvement, counted only in the last half of the budget, and keep the best "
                                        "epoch's weights (paper: 25–30); None = off: the whole budget runs and the "
                                        "final weights are kept", type=int, within="[1, inf)",
                                  hint="or omit it to train the whole budget")
    checkpoint_every: int = option(1, "epochs between checkpoints when fit writes one", within="[1, inf)")
    augment: str = option("", "augmentations in generator steps, comma-separated: hflip (mirror half the images), "
                              "shift (move them by up to 2 px); never in NeuroSQL's cost matrix; empty = none")
    val_fraction: float = option(0.1, "fraction of training images held out for validation when none are given",
                                 within="[0, 1)")
    seed: int = option(0, "random seed for initialisation, shuffling and the lattice", within=f"[0, {MAX_SEED}]")
    device: str = option("auto", "'auto' (CUDA, then Apple's MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    progress: bool = option(True, "show a progress bar with ETA and the current loss")

    def validate(self) -> None:
        """Raise NeuroSQLError for values no run can use: each field's declaration (see
        :func:`neurosql.engine.config.check_config`), then what involves several fields."""
        check_config(self)
        if self.epochs and self.steps:
            raise NeuroSQLError(f"give the budget once: --epochs {self.epochs} or --steps {self.steps}, not both")
        parse_augmentations(self.augment)
        resolve_device(self.device)

    def budget(self, n: int, batch_size: int | None = None, n_batches=None) -> Budget:
        """The budget for ``n`` training images.

        ``batch_size`` overrides the configured one (Alg. 2 steps with m images);
        ``n_batches(n, batch_size)`` counts the updates of an epoch (default:
        ceil(n / batch_size); data-parallel runs count per process). The
        automatic batch keeps ≥ ~16 updates per epoch on small sets; the
        automatic budget keeps ≥ AUTO_STEPS[0] updates however small n is.
        """
        b = batch_size or self.batch_size or auto_batch_size(n)
        per_epoch = n_batches(n, b) if n_batches else max(1, -(-n // b))
        if self.epochs:
            epochs = self.epochs
        else:
            steps = self.steps or min(max(AUTO_EPOCHS * per_epoch, AUTO_STEPS[0]), AUTO_STEPS[1])
            epochs = -(-steps // per_epoch)
        return Budget(b, per_epoch, epochs)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise NeuroSQLError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**values)


def auto_batch_size(n: int) -> int:
    """n / AUTO_BATCH_DIVISOR rounded down to a power of two, clamped to AUTO_BATCH."""
    target = max(n // AUTO_BATCH_DIVISOR, 1)
    return min(max(1 << (target.bit_length() - 1), AUTO_BATCH[0]), AUTO_BATCH[1])


def resolve_device(name: str) -> torch.device:
    """The one rule for every command: 'auto' → CUDA when available, else Apple's MPS, else
    CPU; a named device must exist here (CUDA index below the GPU count), else an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps") or (device.type != "cuda" and device.index):
        raise NeuroSQLError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuroSQLError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise NeuroSQLError(f"device '{name}' requested but this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}; pick one of them")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NeuroSQLError(f"device '{name}' requested but MPS (Apple silicon) is not available; use --device cpu")
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
