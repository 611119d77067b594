"""A run directory: everything a trained model leaves next to itself.

``model.pt`` (checkpoint), ``config.json`` (resolved config and data),
``run.json`` (versions, device, timings), ``log.csv`` and ``training.png``
(per-epoch numbers and curves), ``samples.png`` and ``reconstructions.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .data import ImageData, load_data, load_validation
from .errors import NeuroSQLError
from .persistence import environment_info, write_json
from .report import plot_training, save_grid


def reconstruction_pairs(real: torch.Tensor, recon: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Interleave rows of real images and their reconstructions for a grid."""
    n = len(real) - len(real) % per_row
    real, recon = real[:n].view(-1, per_row, *real.shape[1:]), recon[:n].view(-1, per_row, *recon.shape[1:])
    return torch.stack([real, recon], dim=1).flatten(0, 2)


def timing_summary(rows: list[dict]) -> dict:
    """Mean seconds per epoch of each phase; a phase that runs only in some epochs
    (assignment and validation every K epochs) is amortised over all of them."""
    def per_epoch(key):
        return float(sum(r.get(key, 0.0) for r in rows) / len(rows)) if rows else 0.0

    generator, cost, solve = per_epoch("time_generator"), per_epoch("time_cost"), per_epoch("time_assign")
    return {
        "generator_s_per_epoch": generator,
        "cost_s_per_epoch_amortised": cost,
        "assign_s_per_epoch_amortised": solve,
        "epoch_s": generator + cost + solve + per_epoch("time_val"),
    }


def write_config(out: str | Path, method: str, config, data: dict) -> Path:
    """config.json: the method, its resolved configuration and where the data came from."""
    return write_json(Path(out) / "config.json", {"method": method, "model": config.to_dict(), "data": data})


def write_run(model, out: str | Path, X_train: torch.Tensor, wall_time: float, n_samples: int = 64) -> Path:
    """Write the run directory of a fitted model (every file atomically)."""
    out = Path(out)
    model.save(out / "model.pt")
    model.log_.write_csv(out / "log.csv")
    plot_training(model.log_.rows, out / "training.png")
    samples = model.sample(n_samples, seed=model.config.seed)
    save_grid(samples, out / "samples.png", nrow=8)
    rows = np.linspace(0, len(model.train_index_) - 1, min(32, len(model.train_index_))).astype(int)  # spread over the set
    recon = model.decode(model.codes_[torch.as_tensor(rows, device=model.codes_.device)].cpu())
    save_grid(reconstruction_pairs(X_train[torch.as_tensor(model.train_index_[rows])], recon), out / "reconstructions.png", nrow=8)
    write_json(
        out / "run.json",
        {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_time_s": wall_time,
            "epochs_run": model.epochs_run_,
            "n_train": len(model.train_index_),
            "parameters": model.n_parameters,
            "timing": timing_summary(model.log_.rows),
            "final": model.log_.rows[-1] if model.log_.rows else {},
            "environment": environment_info(model.device_),
        },
    )
    return out


def load_run_data(run_dir: str | Path, split: str, spec: str | None = None, progress: bool = True) -> ImageData:
    """The images of ``split`` as the run saw them: same source, resolution and channels.

    The training split also gets the run's cap and seed, so its order matches the
    model's codes (``train_index_`` indexes into it); other splits are used whole.
    """
    path = Path(run_dir)
    config_path = (path if path.is_dir() else path.parent) / "config.json"
    if not config_path.is_file():
        raise NeuroSQLError(f"{config_path} not found; evaluate a run directory written by 'neurosql train'")
    config = json.loads(config_path.read_text())
    data = config["data"]
    return load_data(
        spec or data["spec"], split, resolution=data["resolution"], channels=data["channels"],
        limit=data["limit"] if split == "train" else None, seed=config["model"]["seed"], progress=progress,
    )


def load_run_validation(run_dir: str | Path, train: ImageData) -> ImageData | None:
    """The early-stopping images a run trained with (from the val split), or None when
    they were held out of its training images (``train``: the run's training data)."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    if not config["data"].get("n_val"):  # older runs, and data sets without a usable val split
        return None
    return load_validation(config["data"]["spec"], len(train), config["model"]["val_fraction"],
                           resolution=train.images.shape[-1], channels=train.images.shape[1],
                           seed=config["model"]["seed"], progress=False)
