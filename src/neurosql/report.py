"""Pictures people look at: image grids and training curves (PNG, written atomically)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from .persistence import atomic_write, write_text  # noqa: E402


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile (n, C, H, W) images in [0, 1] into one uint8 (rows·H, cols·W, C) array."""
    images = images.detach().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + padding) + padding, cols * (w + padding) + padding, c), dtype=np.uint8) * 255
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (n, H, W, C)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y : y + h, x : x + w] = pixels[k]
    return grid


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # suffix -> Pillow format; PNG otherwise


def encode_image(array: np.ndarray, suffix: str = ".png", scale: int = 1) -> bytes:
    """A (H, W, C) uint8 array as the bytes of a PNG or JPEG file (by ``suffix``), optionally enlarged (nearest)."""
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format=IMAGE_FORMATS.get(suffix.lower(), "PNG"))
    return buffer.getvalue()


def save_image(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a (H, W, C) uint8 array as PNG (or JPEG for .jpg/.jpeg), optionally enlarged for small images."""
    data = encode_image(array, Path(path).suffix, scale)
    return atomic_write(path, lambda f: f.write(data))


def grid_array(images: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """:func:`make_grid` of images, or of volumes (n, C, D, H, W) by their three middle slices (:func:`mid_slices`)."""
    return make_grid(mid_slices(images) if images.ndim == 5 else images, nrow)


def grid_bytes(images: torch.Tensor, suffix: str = ".png", nrow: int | None = None) -> bytes:
    """Images as one grid picture's file bytes (:func:`grid_array`); images under 64 px are enlarged 2× for legibility."""
    return encode_image(grid_array(images, nrow), suffix, scale=2 if images.shape[-2] < 64 else 1)


def mid_slices(volumes: torch.Tensor, gap: int = 1) -> torch.Tensor:
    """Each volume as one image of its three middle slices side by side: axial | coronal | sagittal.

    (n, C, D, H, W) -> (n, C, S, 3 S + 2 gap), S = max(D, H, W), planes centred
    on a white background; axes as stored (D, H, W), i.e. planes through the
    middle of D, of H and of W.
    """
    n, c, D, H, W = volumes.shape
    S = max(D, H, W)
    planes = [volumes[:, :, D // 2], volumes[:, :, :, H // 2], volumes[:, :, :, :, W // 2]]  # (n, C, ·, ·) each
    out = volumes.new_ones(n, c, S, 3 * S + 2 * gap)
    for k, plane in enumerate(planes):
        h, w = plane.shape[-2:]
        top, left = (S - h) // 2, k * (S + gap) + (S - w) // 2
        out[:, :, top : top + h, left : left + w] = plane
    return out


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images as one grid picture (PNG, or JPEG for .jpg/.jpeg); see :func:`grid_bytes`."""
    data = grid_bytes(images, Path(path).suffix, nrow)
    return atomic_write(path, lambda f: f.write(data))


def subplots(*args, **kwargs):
    """``matplotlib.pyplot.subplots`` on the file-only backend this module selects."""
    return plt.subplots(*args, **kwargs)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_training(rows: list[dict], path: str | Path) -> Path:
    """Training curves: losses, assignment cost and the fraction of codes that moved."""
    fig, (ax_loss, ax_assign) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in rows]
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train ℓ")
    val = [(r["epoch"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        ax_loss.plot(*zip(*val), "o-", label="validation ℓ (nearest lattice point)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="losses")
    ax_loss.legend()
    rounds = [r for r in rows if "assign_cost" in r]
    if rounds:
        ax_assign.plot([r["epoch"] for r in rounds], [r["assign_cost"] for r in rounds], "o-", label="assignment cost")
        twin = ax_assign.twinx()
        twin.plot([r["epoch"] for r in rounds], [r["changed"] for r in rounds], "s--", color="tab:red")
        twin.set_ylabel("fraction of codes moved", color="tab:red")
        ax_assign.legend(loc="upper center")
    ax_assign.set(xlabel="epoch", ylabel="mean C[i, π(i)]", title="assignment")
    return save_figure(fig, path)


def _prior_outline(ax, prior: str, projected: bool) -> None:
    """Draw the prior's support (uniform cube, unit ball) or its 1-2-3σ circles (Gaussian).

    A projection onto orthonormal directions keeps N(0, I) standard normal, so
    the circles stay right for PCA views; the other supports are not drawn there.
    """
    style = dict(fill=False, color="0.3", lw=1, ls="--")
    if prior == "normal":
        for r in (1, 2, 3):
            ax.add_patch(plt.Circle((0, 0), r, **style))
    elif projected:
        return
    elif prior == "uniform":
        ax.add_patch(plt.Rectangle((0, 0), 1, 1, **style))
    elif prior == "spherical_uniform":
        ax.add_patch(plt.Circle((0, 0), 1, **style))


def plot_latents(codes: torch.Tensor, labels: np.ndarray | None, prior: str, path: str | Path) -> Path:
    """Fig. 2: codes in 2-D (a PCA projection when d > 2), coloured by label, prior outlined.

    prior: "normal", "uniform" or "spherical_uniform" (see ``Lattice.prior``).
    """
    z = codes.detach().cpu().double().numpy()
    projected = z.shape[1] > 2
    if projected:
        _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
        z = z @ vt[:2].T  # (n, 2), not re-centred: the prior stays centred at 0
    elif z.shape[1] == 1:
        z = np.column_stack([z[:, 0], np.zeros(len(z))])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.6)
    else:
        for c in np.unique(labels):
            keep = labels == c
            ax.scatter(z[keep, 0], z[keep, 1], s=4, alpha=0.7, label=str(c))
        ax.legend(markerscale=3, fontsize=7, loc="upper right", ncol=2)
    _prior_outline(ax, prior, projected)
    ax.set_aspect("equal", adjustable="datalim")
    title = "codes Ẑ" + (" (first two principal components)" if projected else "")
    ax.set(title=title, xlabel="PC 1" if projected else "z₁", ylabel="PC 2" if projected else "z₂")
    return save_figure(fig, path)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def write_markdown_report(path: str | Path, title: str, images: list[tuple[str, str]], metrics: dict,
                          definitions: dict[str, str]) -> Path:
    """A markdown report: the pictures, then a table of every metric with its definition."""
    lines = [f"# {title}", ""]
    for caption, file in images:
        lines += [f"**{caption}**", "", f"![{caption}]({file})", ""]
    lines += ["| metric | value | definition |", "|---|---|---|"]
    lines += [f"| {key} | {_format(value)} | {definitions.get(key, '')} |" for key, value in metrics.items()]
    return write_text(path, "\n".join(lines) + "\n")
