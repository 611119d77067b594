"""Files that are never half-written: atomic writes and checksummed, validated checkpoints.

Every output goes to a temporary file in the destination folder, is flushed
and fsync'ed, then renamed over the target (`os.replace` is atomic on POSIX
and Windows), so a crash leaves either the old file or the new one. A
checkpoint carries the SHA-256 of its payload, so a flipped bit is refused
instead of loading silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import NeuroSQLError

CHECKPOINT_FORMAT = 3  # payload + SHA-256 of one schema for every method; bump when the layout changes
UNRELEASED_FORMATS = (1, 2)  # internal milestones before 0.1.0, no longer read (README, Changelog)
TEMPORARY = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")  # what atomic_write names a temporary: .NAME.XXXXXXXX.tmp


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then rename it to ``path``.

    A missing folder, a full disk or a read-only folder raise NeuroSQLError; the
    temporary is removed and an existing ``path`` is left as it was.
    """
    return write_files({Path(path): write})[0]


def write_files(writers: dict[Path, Callable[[io.BufferedWriter], None]]) -> list[Path]:
    """Write several files all or none: each ``writers[path](f)`` to a temporary, then all renamed."""
    for path in writers:
        if not path.parent.is_dir():
            raise NeuroSQLError(f"folder {path.parent} does not exist; create it or choose another path")
        if path.is_dir():
            raise NeuroSQLError(f"{path} is a directory; move it away or choose another path")
    temporaries: dict[Path, str] = {}
    try:
        for path, write in writers.items():
            fd, temporaries[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temporaries[path], 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
    except BaseException as exc:
        for tmp in temporaries.values():
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise NeuroSQLError(
                f"cannot write {path} ({exc.strerror or exc}); free some space, check permissions or choose another path"
            ) from None
        raise
    for path, tmp in temporaries.items():
        os.replace(tmp, path)
    return list(temporaries)


def remove_temporaries(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporaries a killed process left in ``folder`` while writing one of the files ``names``
    (``.NAME.XXXXXXXX.tmp``); any other file, a user's ``.notes.draft.tmp`` included, is left alone."""
    removed = []
    for p in Path(folder).iterdir():
        match = TEMPORARY.match(p.name)
        if match and match.group(1) in names and p.is_file():
            removed.append(p)
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8, atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Save a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically.

    The file is itself a ``torch.save`` dict: ``payload``, the serialised state
    as a uint8 tensor, and ``sha256``, its digest, checked on every load.
    """
    payload = _serialise(state)
    wrapped = {
        "format": CHECKPOINT_FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    data = _serialise(wrapped)  # in memory first, so that a full disk fails in f.write as an OSError
    return atomic_write(path, lambda f: f.write(data))


def _serialise(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _unpickle(source, path: Path):
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise NeuroSQLError(
            f"checkpoint {path} is corrupt or not a NeuroSQL checkpoint ({type(exc).__name__}); "
            "retrain or restore it from a backup"
        ) from None


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a user means by ``path``: the file itself, or a run directory's ``model.pt``."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    ``path`` may be the file or a run directory holding ``model.pt``; which model kind it
    must hold is :func:`neurosql.methods.checkpoints.read_model`'s check.
    ``weights_only=True`` keeps loading safe: a checkpoint cannot run code.
    """
    path = checkpoint_file(path)
    if not path.is_file():
        raise NeuroSQLError(f"checkpoint not found: {path}; pass a run directory or its model.pt")
    state = _unpickle(path, path)
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt in UNRELEASED_FORMATS:
        raise NeuroSQLError(f"{path} is a checkpoint of format {fmt}, from a milestone before release 0.1.0 whose "
                            "layouts are no longer read; retrain the model")
    if fmt == CHECKPOINT_FORMAT:
        payload = state.get("payload")
        if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
            raise NeuroSQLError(f"checkpoint {path} is corrupt (no payload); retrain or restore it from a backup")
        data = payload.numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != state.get("sha256"):
            raise NeuroSQLError(
                f"checkpoint {path} is corrupt (its SHA-256 checksum does not match); retrain or restore it from a backup"
            )
        state = _unpickle(io.BytesIO(data), path)
        if isinstance(state, dict):
            state.setdefault("format", fmt)
    else:
        raise NeuroSQLError(f"{path} is not a NeuroSQL checkpoint of format {CHECKPOINT_FORMAT}")
    if not _all_finite(state):
        raise NeuroSQLError(f"checkpoint {path} holds NaN or Inf weights (training diverged); retrain with a lower --lr")
    return state


def _all_finite(obj) -> bool:
    """Whether every floating tensor in a nested dict/list is finite."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_finite(v) for v in obj)
    return True


@contextmanager
def restoring(path: str | Path):
    """Turn a checkpoint whose contents do not fit its model (a missing key, a
    wrong shape or type) into a NeuroSQLError naming the file."""
    try:
        yield
    except NeuroSQLError:
        raise
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise NeuroSQLError(
            f"checkpoint {path} is incomplete or inconsistent ({type(exc).__name__}: {detail}); "
            "retrain or restore it from a backup"
        ) from None


def images_digest(images, chunk: int = 4096) -> str:
    """SHA-256 of images (n, C, H, W) as float32, ``chunk`` rows at a time (a memory map is read once).

    Recorded by fit and checked by resume, so other data of the same shape is refused.
    """
    digest = hashlib.sha256(repr(tuple(images.shape)).encode())
    for start in range(0, len(images), chunk):
        block = images[torch.arange(start, min(start + chunk, len(images)))]
        digest.update(block.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it is writable, before any long work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise NeuroSQLError(
            f"cannot write to output directory {path} ({exc.strerror or exc}); choose another --out"
        ) from None
    return path
