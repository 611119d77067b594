"""Offline image sets like our users' own: smooth anatomy and microscopy fields (issue 20).

Both are drawn from seeded random parameters, so a set is the same on every
machine, and neither ships with a package: they stand in for the brain slices
and cell images users bring, which we do not have.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter


def _smooth_field(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Smooth random field (size, size): white noise on a coarse grid, bicubically upsampled."""
    coarse = rng.normal(size=(size // cell + 2, size // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def brain_slices(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """n axial "brain MRI" slices (n, 1, size, size) in [0, 1]: a bright skull ring, a cortex of
    folded grey texture, white matter, two dark ventricles, slight noise; pose, shape and contrast
    vary per slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        cx, cy = rng.uniform(-0.03, 0.03, 2)
        a, b, angle = rng.uniform(0.36, 0.44), rng.uniform(0.30, 0.38), rng.uniform(-0.3, 0.3)
        x = np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)
        y = -np.sin(angle) * (xx - cx) + np.cos(angle) * (yy - cy)
        r = (x / b) ** 2 + (y / a) ** 2  # 1 on the skull's outer edge
        img = np.where((r <= 1) & (r > 0.8), 0.9, 0.0).astype(np.float32)
        brain = r <= 0.78
        img[brain] = (0.45 + 0.08 * np.tanh(2 * _smooth_field(rng, size, 6)))[brain]
        white_matter = brain & (r <= rng.uniform(0.35, 0.5))
        img[white_matter] = rng.uniform(0.62, 0.72)
        gap = rng.uniform(0.05, 0.09)
        for side in (-1, 1):
            ventricle = ((x - side * gap) / rng.uniform(0.03, 0.05)) ** 2 + \
                        ((y + rng.uniform(-0.03, 0.03)) / rng.uniform(0.10, 0.16)) ** 2 <= 1
            img[ventricle] = 0.12
        out[i, 0] = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return out


def cell_fields(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """n microscopy-like fields (n, 1, size, size) in [0, 1]: 2–6 bright cells with dark nuclei at
    random places on a dark, noisy background, slightly blurred."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        canvas = Image.new("F", (2 * size, 2 * size), 0.08)  # drawn at twice the size, then downsampled
        draw = ImageDraw.Draw(canvas)
        for _ in range(rng.integers(2, 7)):
            x, y = rng.uniform(12, 2 * size - 12, 2)
            r = rng.uniform(7, 14)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=float(rng.uniform(0.6, 0.95)))
            r *= rng.uniform(0.35, 0.55)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=float(rng.uniform(0.15, 0.3)))
        field = gaussian_filter(np.asarray(canvas), 2.4)[::2, ::2]
        out[i, 0] = np.clip(field + rng.normal(0, 0.03, field.shape), 0, 1)
    return out


def phantom_slices(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """n axial slices (n, 1, size, size) in [0, 1] of the 3-D phantom heads of
    :mod:`benchmarks.phantoms3d`, each within ±size/16 of its head's middle: smooth,
    piecewise-constant anatomy (skull, brain, ventricles, and a lesion in half of them)."""
    from .phantoms3d import phantoms

    rng = np.random.default_rng(seed)
    heads, _ = phantoms(n, size, seed)  # (n, size, size, size) uint8
    depth = size // 2 + rng.integers(-(size // 16), size // 16 + 1, n)
    return (heads[np.arange(n), depth] / 255.0).astype(np.float32)[:, None]
