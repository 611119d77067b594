"""A run directory: everything a trained model of any method leaves next to itself.

``model.pt`` (checkpoint), ``config.json`` (method, resolved config and data),
``run.json`` (versions, device, timings), ``log.csv`` and ``training.png``
(per-epoch numbers and curves), ``samples.png`` and ``samples.npy``,
``reconstructions.png`` when the model keeps training codes, and
``samples_by_class.png`` (one row per class) when the model has labels.

A failed command never modifies a previous run: a new run is checked
(settings, data, output directory) before anything is written, replaces an
existing run only with ``overwrite`` and is undone if it fails before its
first checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .methods.code_sampling import samples_by_class
from .data import ImageData, load_data, load_validation
from .data.config import DataConfig
from .engine.config import TrainConfig, check_config
from .errors import NeuroSQLError
from .loggers import epoch_logger
from .core.generators import count_parameters
from .core.losses import loss_per_sample
from .methods import CONFIGS
from .persistence import atomic_write, checkpoint_file, write_json
from .report import plot_training, save_grid

RUN_FILES = ("config.json", "model.pt")  # what makes a directory a run
RUN_OUTPUTS = (*RUN_FILES, "run.json", "log.csv", "training.png", "samples.png", "samples.npy", "samples.nii.gz",
               "samples_by_class.png", "reconstructions.png", "metrics.json", "report.md", "reconstructions_test.png",
               "latents.png", "interpolation.png")  # every file a run directory gets (the light evaluation's too)
VOLUME_METHODS = ("neurosql", "vae")  # methods whose networks have 3-D versions


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse work that would need more memory than the machine has (instead of a MemoryError later)."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise NeuroSQLError(f"{what} need about {nbytes / 1e9:,.1f} GB, more than this machine's {total / 1e9:.0f} GB; {fix}")


def check_trainable(config, images: torch.Tensor, method: str = "neurosql") -> None:
    """Refuse, before anything is written, settings and data that fit would fail on: a method
    without 3-D networks for volumes, a backbone that cannot make these images, one too big
    for memory, images the loss cannot compare."""
    channels, height, width = images.shape[1], images.shape[-2], images.shape[-1]  # images or volumes
    if images.ndim == 5 and method not in VOLUME_METHODS:
        raise NeuroSQLError(f"the {method} has no 3-D networks; train volumes with --method {' or '.join(VOLUME_METHODS)}")
    if height != width:
        raise NeuroSQLError(f"images must be square, got {(height, width)}; crop or resize them")
    with torch.device("meta"):  # shapes only: no memory, however wide
        generator = config.backbone(height, channels, volume=images.ndim == 5)
    n = count_parameters(generator)
    check_memory(16 * n, f"a generator of {n:,} parameters with its gradients and AdamW moments would", "lower --width")
    if hasattr(config, "loss"):  # the DDPM's loss is on noise, at any size
        loss_per_sample(images[:1], images[:1], config.loss)  # e.g. images smaller than the SSIM window


def _probe_writable(folder: Path, shown: Path) -> None:
    """Prove ``folder`` accepts new files (permissions, read-only mounts) by creating and removing one."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise NeuroSQLError(f"cannot write to output directory {shown} ({exc.strerror or exc}); choose another --out") from None


def check_writable(path: Path) -> None:
    """Prove that directory ``path`` (existing or not) can be made and written, leaving nothing behind."""
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NeuroSQLError(f"cannot write to output directory {path} ({existing} is a file); choose another --out")
    _probe_writable(existing, path)


def check_new_run(out: str, overwrite: bool) -> Path:
    """The directory a new run may be written to, checked without writing anything.

    An existing directory with files must be a run and needs ``overwrite``.
    """
    if not str(out).strip():
        raise NeuroSQLError("--out is empty; name a directory for the run, e.g. --out runs/mnist")
    path = Path(out)
    if path.is_symlink():  # moving a link aside, or writing through a dangling one, is never what was meant
        raise NeuroSQLError(f"--out {path} is a symbolic link to {os.readlink(path)}; pass the directory itself "
                            "(or another --out)")
    if path.exists() and not path.is_dir():
        raise NeuroSQLError(f"--out {path} is a file, not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()):
        if not any((path / name).is_file() for name in RUN_FILES):
            raise NeuroSQLError(f"{path} holds files but no run; choose another --out (--overwrite only replaces runs)")
        if not overwrite:
            raise NeuroSQLError(
                f"{path} already holds a run; pass --overwrite to replace it, --resume {path} to continue it, "
                "or choose another --out"
            )
    check_writable(path)
    if path.is_dir():
        _probe_writable(path.absolute().parent, path)  # a replaced run is moved aside there
    return path


def check_run_dir(path: str | Path) -> Path:
    """A run directory that ``train --resume`` may continue, checked without writing anything."""
    path = Path(path)
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if not path.is_dir() or missing:
        why = "no such directory" if not path.is_dir() else "no " + " or ".join(missing)
        raise NeuroSQLError(f"cannot resume {path} ({why}); pass a run directory written by 'neurosql train'")
    _probe_writable(path, path)
    return path


def check_run_method(path: Path, saved: str) -> str:
    """The method of run ``path``, the same in its config.json and in its model.pt, which holds a ``saved``
    model (a checkpoint copied in from another run is refused)."""
    recorded = read_config(path).get("method", "neurosql")
    if saved != recorded:
        raise NeuroSQLError(f"{path / 'config.json'} records a {recorded} run but {path / 'model.pt'} holds a {saved} "
                            "model; put back the run's own model.pt or start a new run")
    return recorded


@contextmanager
def created_dir(path: Path, keep: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Make ``path`` and its missing parents; if the block fails, remove what was made unless ``keep()``."""
    top = None
    for folder in (path.absolute(), *path.absolute().parents):
        if folder.exists():
            break
        top = folder
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if top is not None and not keep():
            shutil.rmtree(top, ignore_errors=True)
        raise


@contextmanager
def new_run(out: Path) -> Iterator[Path]:
    """The directory of a new run, for the block that writes it.

    A previous run in ``out`` is moved aside and deleted once the block ends
    with a checkpoint written; if the block fails before (bad data found late,
    divergence in the first epoch, a full disk, Ctrl-C), the new files are
    removed and the previous run (or empty directory) is put back.
    """
    previous = None
    if out.is_dir():
        previous = Path(tempfile.mkdtemp(prefix=f".{out.absolute().name}.previous-", dir=out.absolute().parent))
        os.replace(out, previous)
    try:
        with created_dir(out, keep=lambda: (out / "model.pt").is_file()):
            yield out
    except BaseException as exc:
        if previous is not None and out.exists():
            shutil.rmtree(previous, ignore_errors=True)
        elif previous is not None:
            os.replace(previous, out)
            if isinstance(exc, NeuroSQLError):
                raise NeuroSQLError(f"{exc}; the previous run in {out} was put back as it was") from None
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def reconstruction_pairs(real: torch.Tensor, recon: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Interleave rows of real images and their reconstructions for a grid."""
    n = len(real) - len(real) % per_row
    real, recon = real[:n].view(-1, per_row, *real.shape[1:]), recon[:n].view(-1, per_row, *recon.shape[1:])
    return torch.stack([real, recon], dim=1).flatten(0, 2)


def picture_rows(n: int, k: int = 32, seed: int = 0) -> torch.Tensor:
    """k seeded random rows of n images for a picture: data sorted by class still shows every class."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(k, n)]


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


def write_config(out: str | Path, method: str, config, data: dict, origin: dict | None = None) -> Path:
    """config.json: the method, its resolved configuration and where the data came from;
    ``origin`` records a re-run (``train --config``): the file it came from and what was overridden."""
    record = {"method": method, "model": config.to_dict(), "data": data}
    return write_json(Path(out) / "config.json", record if origin is None else {**record, "origin": origin})


def read_config(path: str | Path) -> dict:
    """A run's config.json (or the one in run directory ``path``), every value checked as its flag
    would be (:func:`check_record`), so that a re-run, a resume and an evaluation can trust it."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path  # a run directory, or a config.json of any name
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise NeuroSQLError(f"{path} not found; pass a config.json written by 'neurosql train'") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        why = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise NeuroSQLError(f"cannot read {path} ({why}); pass a config.json written by 'neurosql train'") from None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), dict) for k in ("model", "data")):
        raise NeuroSQLError(f"{path} is not a run's config.json (no 'model' and 'data'); pass one written by 'neurosql train'")
    check_record(record, path)
    return record


def check_record(record: dict, path: Path) -> None:
    """Refuse a config.json whose method, model settings or data settings a flag could not have given,
    by the same declarations (:func:`neurosql.engine.config.check_config`), naming the file."""
    method = record.get("method", "neurosql")
    if not isinstance(method, str) or method not in CONFIGS:
        raise NeuroSQLError(f"{path} names an unknown method {method!r}; set \"method\" to one of {', '.join(CONFIGS)}")
    config_cls = CONFIGS[method]
    model = {k: v for k, v in record["model"].items() if k in config_cls.__dataclass_fields__}
    data = {k: record["data"].get(k) for k in ("spec", "resolution", "channels", "limit", "options")}
    try:
        check_config(config_cls(**model))
        DataConfig.checked(**data)
    except NeuroSQLError as exc:
        raise NeuroSQLError(f"{path}: {exc}; correct the file or pass the value as a flag") from None


def peak_rss_mb() -> float:
    """This process's maximum resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def train_run(model, X, X_val, out: Path, checkpoint: bool, logger: str | None = None, n_samples: int = 64,
              affine: np.ndarray | None = None, **fit_args) -> dict:
    """The one pipeline of ``train`` and ``benchmark``: fit ``model`` on X (``X_val``, or a held-out share of
    X, for early stopping), then write the run directory ``out``: ``model.pt`` and :func:`write_run`'s files.

    checkpoint: fit rewrites model.pt as it trains, so that ``train --resume`` can continue; without it
    the model is saved once, after the timing, so that saving stays out of the benchmark's times.
    logger: ``--logger``'s name, its callback open during fit. Returns what the fit took:
    ``wall_time_s`` and this process's ``peak_rss_train_mb``.
    """
    with epoch_logger(logger, out) as callback:
        start = time.perf_counter()
        model.fit(X, X_val, checkpoint=out / "model.pt" if checkpoint else None, callback=callback, **fit_args)
        cost = {"wall_time_s": time.perf_counter() - start, "peak_rss_train_mb": peak_rss_mb()}
    if not checkpoint:
        model.save(out / "model.pt")
    write_run(model, out, X, wall_time=cost["wall_time_s"], n_samples=n_samples, affine=affine)
    return cost


def write_run(model, out: str | Path, X_train: torch.Tensor, wall_time: float, n_samples: int = 64,
              affine: np.ndarray | None = None) -> Path:
    """Write the rest of the run directory of a fitted model whose ``model.pt`` is saved (every file
    atomically); volumes with the voxel-to-world ``affine`` of their NIfTI source also go to samples.nii.gz."""
    out = Path(out)
    model.log_.write_csv(out / "log.csv")
    plot_training(model.log_.rows, out / "training.png")
    samples = model.sample(n_samples, seed=model.config.seed)
    save_grid(samples, out / "samples.png", nrow=8)
    atomic_write(out / "samples.npy", lambda f: np.save(f, samples.numpy()))
    if affine is not None and samples.ndim == 5:
        atomic_write(out / "samples.nii.gz", lambda f: f.write(nifti_bytes(samples, affine)))
    if model.samples_by_label and model.labels_ is not None:
        save_grid(samples_by_class(model, seed=model.config.seed), out / "samples_by_class.png", nrow=8)
    codes = model.codes_ if model.has_codes else None  # the GAN and the DDPM keep none
    if codes is not None:
        rows = picture_rows(len(model.train_index_), seed=model.config.seed)
        recon = model.decode(codes[rows.to(codes.device)].cpu())
        real = X_train[torch.as_tensor(model.train_index_[rows.numpy()])]
        save_grid(reconstruction_pairs(real, recon), out / "reconstructions.png", nrow=8)
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
            # NeuroSQL: Algorithm 1 or 2 and why, the code noise and colour warm-up that ran, the sampler the
            # copy guard chose
            **({"assign_batch": model.config.assign_batch, "assign_batch_rule": model.assign_batch_rule_,
                "code_noise": model.config.code_noise, "colour_warmup": model.config.colour_warmup,
                "sampler_bandwidth": model.bandwidth_,
                "copy_ratio": model.copy_ratio_}
               if "assign_batch_rule_" in model.__dict__ else {}),
            "environment": environment_info(model.device_),
        },
    )
    return out


def environment_info(device: torch.device | str) -> dict:
    """Versions and hardware recorded next to every run, for reproducibility."""
    import numpy
    import scipy

    from . import __version__

    info = {
        "neurosql": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def nifti_bytes(volumes: torch.Tensor, affine: np.ndarray) -> bytes:
    """Gray volumes (m, 1, X, Y, Z) as one gzipped 4-D NIfTI (X, Y, Z, m) in the space of ``affine``
    (one volume, m = 1, as a 3-D NIfTI)."""
    import gzip

    import nibabel as nib

    array = volumes[:, 0].permute(1, 2, 3, 0).numpy().astype(np.float32)  # (X, Y, Z, m)
    array = array[..., 0] if array.shape[-1] == 1 else array
    return gzip.compress(nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64)).to_bytes(), compresslevel=6)


def sample_files(images: torch.Tensor, affine: np.ndarray | None = None) -> dict[str, bytes]:
    """A folder's worth of samples, name → bytes: ``sample_0000.png`` per image, or ``sample_0000.nii.gz``
    per volume (in the space of ``affine``, the identity when None), and ``samples.npy`` with them all."""
    from .report import encode_image, make_grid

    digits = max(4, len(str(len(images) - 1)))
    if images.ndim == 5:
        affine = np.eye(4) if affine is None else affine
        files = {f"sample_{i:0{digits}d}.nii.gz": nifti_bytes(images[i : i + 1], affine) for i in range(len(images))}
    else:
        files = {f"sample_{i:0{digits}d}.png": encode_image(make_grid(images[i : i + 1], nrow=1, padding=0))
                 for i in range(len(images))}
    buffer = io.BytesIO()
    np.save(buffer, images.numpy())
    return {**files, "samples.npy": buffer.getvalue()}


def run_affine(path: str | Path) -> np.ndarray | None:
    """The voxel-to-world affine of a volume run's NIfTI data, as recorded in its samples.nii.gz (None without)."""
    import nibabel as nib

    recorded = run_directory(path) / "samples.nii.gz"
    return nib.load(recorded).affine if recorded.is_file() else None


def run_directory(path: str | Path) -> Path:
    """The run a user means by ``path``: a run directory, or the folder of its ``model.pt``."""
    return checkpoint_file(path).parent


def load_run_data(run_dir: str | Path, split: str, spec: str | None = None, progress: bool = True) -> ImageData:
    """The images of ``split`` as the run saw them: same source, resolution and channels.

    The training split also gets the run's cap and seed, so its order matches the
    model's codes (``train_index_`` indexes into it); other splits are used whole.
    """
    config = read_config(run_directory(run_dir) / "config.json")
    data = config["data"]
    return load_data(
        spec or data.get("spec"), split, resolution=data.get("resolution"), channels=data.get("channels"),
        limit=data.get("limit") if split == "train" else None, seed=config["model"].get("seed", TrainConfig.seed), progress=progress,
        **(data.get("options") or {}),
    )


def load_run_validation(run_dir: str | Path, train: ImageData) -> ImageData | None:
    """The early-stopping images a run trained with (from the val split), or None when
    they were held out of its training images (``train``: the run's training data)."""
    config = read_config(run_dir)
    if not config["data"].get("n_val"):  # older runs, and data sets without a usable val split
        return None
    model = config["model"]
    return load_validation(config["data"].get("spec"), len(train), model.get("val_fraction", TrainConfig.val_fraction),
                           resolution=train.images.shape[-1], channels=train.images.shape[1],
                           seed=model.get("seed", TrainConfig.seed), progress=False, **(config["data"].get("options") or {}))
