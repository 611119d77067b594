"""Experiment loggers: epoch callbacks ``callback(model, row)``, which ``fit`` calls after each epoch's log row.

``neurosql train --logger tensorboard`` uses :class:`TensorBoardLogger`; any other
tracker (W&B, MLflow, …) plugs in the same way from Python, see the README.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .engine.training import averaged
from .errors import NeuroSQLError
from .report import grid_array

LOGGERS = ("tensorboard",)


def check_logger(name: str) -> None:
    """A known logger whose package is installed; else a NeuroSQLError naming the fix."""
    if name not in LOGGERS:
        raise NeuroSQLError(f"unknown logger '{name}'; choose {', '.join(LOGGERS)}")
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise NeuroSQLError("--logger tensorboard needs the 'tensorboard' package; pip install tensorboard "
                            "(or pip install 'neurosql[tensorboard]')") from None


class TensorBoardLogger:
    """Writes to a TensorBoard event folder after each epoch: every number of the epoch's log row
    (losses, learning rate, assignment cost and changes under ``train/``; the time split, seconds
    per phase, under ``time/``) and, every ``grid_every`` epochs and at the last, a grid of
    ``n_grid`` samples drawn with a fixed seed (so grids are comparable across epochs) with the
    weights sampling uses (the weight average, when kept).
    """

    def __init__(self, log_dir: str | Path, grid_every: int = 5, n_grid: int = 16, seed: int = 0):
        check_logger("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.grid_every, self.n_grid, self.seed = grid_every, n_grid, seed

    def __call__(self, model, row: dict) -> None:
        epoch = row["epoch"]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(("time/" if key.startswith("time_") else "train/") + key, value, epoch)
        if epoch % self.grid_every == 0 or epoch == model.budget_.epochs:
            with averaged(model.training_.averages):
                grid = grid_array(model.sample(self.n_grid, seed=self.seed))  # (H, W, C) uint8
            self.writer.add_image("samples", grid, epoch, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@contextmanager
def epoch_logger(name: str | None, run_dir: str | Path) -> Iterator[TensorBoardLogger | None]:
    """The callback of ``--logger name``, writing into ``run_dir/tensorboard`` and closed after the
    block; None without a logger."""
    if name is None:
        yield None
        return
    logger = TensorBoardLogger(Path(run_dir) / "tensorboard")
    try:
        yield logger
    finally:
        logger.close()
