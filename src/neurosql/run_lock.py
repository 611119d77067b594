"""One process writes a run directory at a time: a lock file ``.NAME.lock`` beside the directory
holds the writer's process id. A second ``train`` into the same ``--out`` (or a ``--resume`` of it)
is refused while that process lives; a lock left by a killed process is taken over."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import NeuroSQLError


def lock_path(run: Path) -> Path:
    """The lock of run directory ``run``: beside it, so that moving the run aside keeps it."""
    run = run.absolute()
    return run.parent / f".{run.name}.lock"


FRESH_S = 10  # a lock without a process id this young is being written, not stale


def _holder(lock: Path) -> int | None:
    """The process id written in ``lock``, None when there is none."""
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _held_by_another(lock: Path, pid: int | None) -> bool:
    """Whether a live process holds ``lock``: its process exists, or it has no id yet but is younger than
    FRESH_S seconds (its writer is between creating it and writing its id)."""
    if pid is not None:
        return _alive(pid)
    try:
        return time.time() - lock.stat().st_mtime < FRESH_S
    except OSError:  # removed meanwhile
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


@contextmanager
def run_lock(run: Path) -> Iterator[Path]:
    """Hold the lock of ``run`` for the block; refuse if a live process holds it. Missing parent folders
    are made for the lock and removed after it when they stayed empty (the block failed early)."""
    lock = lock_path(run)
    made = [folder for folder in (lock.parent, *lock.parent.parents) if not folder.exists()]
    try:
        with _held(lock, run):
            yield lock
    finally:
        for folder in made:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty: the run is in it
                break


@contextmanager
def _held(lock: Path, run: Path) -> Iterator[None]:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = _holder(lock)
            if _held_by_another(lock, pid):
                who = "another process" if pid is None else f"process {pid}"
                raise NeuroSQLError(f"{run} is being written by {who} (lock file {lock}); wait for it to "
                                    "finish or choose another --out") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone (killed), or it never wrote its id
        except OSError as exc:
            raise NeuroSQLError(f"cannot write to {lock.parent} ({exc.strerror or exc}); choose another --out") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        yield
    finally:
        lock.unlink(missing_ok=True)
