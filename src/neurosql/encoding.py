"""Codes of images for other tools (``neurosql encode``): one row per image with its id, label and code.

A training image gets the code the model keeps for it (``codes_``, in ``train_index_``
order). For NeuroSQL these are momentum averages Ẑ ← ρ Q_π + (1 − ρ) Ẑ (§2.4), which are
in general not lattice points, so no function of the pixels (the nearest lattice point)
reproduces them: training images are recognised by identity instead, the SHA-256 of their
pixels as the run loads them, matched against the run's training images (checked against the
digest the checkpoint records). Every other image gets ``model.encode``: the nearest lattice
point for NeuroSQL, the encoder mean for the VAE (for which both rules agree on training images).
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from .errors import NeuroSQLError
from .persistence import atomic_write, images_digest

CODE_SUFFIXES = (".csv", ".npy")


def check_has_codes(model) -> None:
    """Only methods that keep training codes and map images to codes (NeuroSQL, the VAE) can encode."""
    if not model.has_codes:
        raise NeuroSQLError(f"a {model.kind} run has no codes (only neurosql and vae runs map images to codes); "
                            "encode a neurosql or vae run")


def image_keys(images: torch.Tensor) -> list[bytes]:
    """The SHA-256 of each image's float32 pixels: (m, C, H, W) → m digests."""
    pixels = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return [hashlib.sha256(row.tobytes()).digest() for row in pixels]


def stored_code_rows(model, train_images: torch.Tensor, images: torch.Tensor) -> np.ndarray:
    """For each of ``images``, the row of ``model.codes_`` of the identical training image, or -1.

    train_images: the run's training data as passed to fit (``train_index_`` indexes it); they
    must have the digest the model recorded, else a NeuroSQLError.
    """
    if images_digest(train_images) != model.data_digest_:
        raise NeuroSQLError("the run's training data changed since training; restore the original data")
    trained = image_keys(train_images[torch.as_tensor(model.train_index_)])
    row_of = {key: row for row, key in reversed(list(enumerate(trained)))}  # a repeated image keeps its first code
    return np.array([row_of.get(key, -1) for key in image_keys(images)], dtype=np.int64)


def encode_images(model, images: torch.Tensor, rows: np.ndarray, refine_steps: int = 0) -> torch.Tensor:
    """Codes (m, d) on the CPU: ``codes_[rows[i]]`` where rows[i] >= 0, ``model.encode`` for the others."""
    check_has_codes(model)
    codes = torch.empty(len(images), model.latent_dim)
    stored = torch.as_tensor(rows >= 0)
    codes[stored] = model.codes_.cpu()[torch.as_tensor(rows[rows >= 0])]
    if not bool(stored.all()):
        codes[~stored] = model.encode(images[~stored], refine_steps=refine_steps)
    return codes


def codes_table(codes: torch.Tensor, ids: list[str], labels: list[str], stored: np.ndarray) -> np.ndarray:
    """One structured row per image: ``id``, ``label``, ``source`` ("stored" or "encoded") and ``code`` (d,)."""
    width = lambda values: max([1, *map(len, values)])
    dtype = [("id", f"U{width(ids)}"), ("label", f"U{width(labels)}"), ("source", "U7"),
             ("code", np.float32, (codes.shape[1],))]
    table = np.empty(len(codes), dtype=dtype)
    table["id"], table["label"] = ids, labels
    table["source"] = np.where(stored, "stored", "encoded")
    table["code"] = codes.numpy()
    return table


def write_codes(path: str | Path, table: np.ndarray) -> Path:
    """The table as CSV (columns id, label, source, z0 … z{d-1}) or as a structured .npy, atomically."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return atomic_write(path, lambda f: np.save(f, table))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "label", "source", *(f"z{j}" for j in range(table["code"].shape[1]))])
    for row in table:
        writer.writerow([row["id"], row["label"], row["source"], *(repr(float(v)) for v in row["code"])])
    data = text.getvalue().encode()
    return atomic_write(path, lambda f: f.write(data))
