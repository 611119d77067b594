"""NeuroSQL against the VAE on 3-D phantoms: random ellipsoid "heads" (issue 15, 3-D targets).

Each head is a bright skull shell around a grey brain with two dark
ventricles; half of them carry a bright lesion (label 1). The volumes are
written as a MedMNIST-layout .npz (official keys, uint8, 80/10/10 splits) and
read back through ``medmnist:PATH``; each method trains with the library's
defaults (the automatic budget) unless --steps is given. Reported per method:
wall time, the time split of an epoch (NeuroSQL: generator / cost /
assignment), the 3-D reconstruction SSIM of the training volumes, the 3-D proxy-FID (App. E's
random-convnet recipe in 3-D) of 100 samples against 100 fresh phantoms beside
that of reconstructions of 100 other fresh (held-out) phantoms, the memorisation
ratio, and the share of samples that show the anatomy (skull, brain and both
ventricles, counted by :func:`anatomy`); pictures show middle slices of 64
samples and of reconstructions.

    python -m benchmarks.phantoms3d --side 16 --out runs/phantoms16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from neurosql.data import load_data
from neurosql.methods import build_method
from neurosql.metrics.fid import proxy_fid_3d
from neurosql.metrics.memorisation import memorisation
from neurosql.metrics.volumes import reconstruction_ssim_3d
from neurosql.persistence import write_json
from neurosql.report import save_grid
from neurosql.runs import reconstruction_pairs, timing_summary


def _ellipsoid(grid, centre, radii, angle):
    """Boolean mask of an ellipsoid rotated by ``angle`` about the first (axial) axis."""
    d, h, w = (g - c for g, c in zip(grid, centre))
    cos, sin = np.cos(angle), np.sin(angle)
    h, w = cos * h + sin * w, -sin * h + cos * w
    return (d / radii[0]) ** 2 + (h / radii[1]) ** 2 + (w / radii[2]) ** 2 <= 1


def phantoms(n: int, side: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n heads (n, side, side, side) uint8 and their labels (n,): 1 when a lesion is present."""
    rng = np.random.default_rng(seed)
    t = (np.arange(side) + 0.5) / side - 0.5
    grid = np.meshgrid(t, t, t, indexing="ij")
    out, labels = np.zeros((n, side, side, side), np.float32), np.arange(n) % 2
    for i in range(n):
        centre, radii, angle = rng.uniform(-0.04, 0.04, 3), rng.uniform(0.34, 0.44, 3), rng.uniform(-0.4, 0.4)
        head = _ellipsoid(grid, centre, radii, angle)
        brain = _ellipsoid(grid, centre, radii - 0.05, angle)
        v = 0.95 * head
        v[brain] = rng.uniform(0.4, 0.55)
        for side_sign in (-1, 1):  # two ventricles, mirrored about the mid-sagittal plane
            offset = centre + np.array([0.0, rng.uniform(-0.02, 0.02), side_sign * rng.uniform(0.05, 0.09)])
            v[_ellipsoid(grid, offset, rng.uniform([0.08, 0.1, 0.03], [0.14, 0.16, 0.05]), angle)] = 0.1
        if labels[i]:
            spot = centre + rng.uniform(-0.15, 0.15, 3)
            v[_ellipsoid(grid, spot, np.full(3, rng.uniform(0.04, 0.07)), 0.0) & brain] = 0.85
        out[i] = v
    return (out * 255).round().astype(np.uint8), labels


def _rays() -> np.ndarray:
    """The 26 unit directions to a voxel's neighbours."""
    d = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if a or b or c], float)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def anatomy(volume: np.ndarray) -> tuple[bool, bool, bool]:
    """Does a (side, side, side) volume in [0, 1] show (skull, brain, both ventricles)?

    The head is the largest connected region above 0.2, holes filled, and its centre of mass c.
    Skull: on at least 24 of the 26 rays from c, a voxel brighter than any brain tone (> 0.6)
    lies within 2 voxels inside the head's edge. Brain: within 0.22·side of c, over half the
    voxels are tissue (0.25–0.75) with a median tone in the phantoms' brain range (0.35–0.62).
    Ventricles: two separate dark regions (< 0.25, at least 8 voxels at 32³; a ventricle has
    about 80) within that ball, centred on either side of the mid-sagittal plane: one merged
    dark blob does not count. 195 of 200 real phantoms pass (5 have touching ventricles); a
    1.5-voxel Gaussian blur loses the skull (and mostly the ventricles); tests.
    """
    side = volume.shape[0]
    labels, count = ndimage.label(volume > 0.2)
    if count == 0:
        return False, False, False
    sizes = ndimage.sum_labels(np.ones_like(volume), labels, range(1, count + 1))
    head = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    centre = np.array(ndimage.center_of_mass(head))
    hits = 0
    for u in _rays():
        points = np.round(centre + np.arange(0, side, 0.5)[:, None] * u).astype(int)
        points = tuple(points[np.all((points >= 0) & (points < side), axis=1)].T)
        inside = np.nonzero(head[points])[0]
        hits += len(inside) > 0 and volume[points][max(0, inside[-1] - 4):inside[-1] + 1].max() > 0.6
    offset = np.indices(volume.shape).transpose(1, 2, 3, 0) - centre
    core = np.linalg.norm(offset, axis=-1) < 0.22 * side
    tissue = volume[core & (volume > 0.25) & (volume < 0.75)]
    brain = tissue.size > 0.5 * core.sum() and 0.35 <= float(np.median(tissue)) <= 0.62
    regions, count = ndimage.label(core & (volume < 0.25))
    index, ones = range(1, count + 1), np.ones_like(volume)
    sizes, centres = ndimage.sum_labels(ones, regions, index), ndimage.center_of_mass(ones, regions, index)
    sides = {np.sign(c[2] - centre[2]) for c, size in zip(centres, sizes) if size >= 8 * (side / 32) ** 3}
    ventricles = sides >= {-1.0, 1.0}
    return bool(hits >= 24), bool(brain), bool(ventricles)


def anatomy_share(volumes: torch.Tensor) -> dict:
    """Shares of (n, 1, s, s, s) volumes showing each part, and all three together."""
    parts = np.array([anatomy(v[0]) for v in volumes.float().cpu().numpy()])
    shares = {"skull": parts[:, 0], "brain": parts[:, 1], "ventricles": parts[:, 2], "anatomy": parts.all(axis=1)}
    return {k: float(v.mean()) for k, v in shares.items()}


def write_medmnist(path: Path, n: int, side: int, seed: int = 0) -> Path:
    """Phantoms as a MedMNIST-layout .npz: {train,val,test}_{images,labels}, 80/10/10."""
    x, y = phantoms(n, side, seed)
    cut = [int(0.8 * n), int(0.9 * n)]
    arrays = {}
    for part, xs, ys in zip(("train", "val", "test"), np.split(x, cut), np.split(y, cut)):
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = xs, ys[:, None].astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return path


def run(out: Path, n: int, side: int, methods: list[str], seed: int = 0, threads: int = 2,
        code_noise: float | None = None, **params) -> dict:
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    path = write_medmnist(out / "phantoms.npz", int(n / 0.8), side, seed)  # n training volumes
    data = load_data(f"medmnist:{path}", "train", progress=False)
    fresh, held_out = (torch.from_numpy(phantoms(100, side, s)[0][:, None] / 255.0).float()  # (100, 1, s, s, s)
                       for s in (seed + 1, seed + 2))
    results = {}
    for method in methods:
        start = time.perf_counter()
        own = {"code_noise": code_noise} if method == "neurosql" and code_noise is not None else {}
        model = build_method(method, seed=seed, progress=False, **params, **own)
        model.fit(data.images, **({"labels": data.label_names()} if method == "neurosql" else {}))
        wall = time.perf_counter() - start
        model.save(out / f"{method}.pt")  # to look again without retraining
        X = data.images[torch.as_tensor(model.train_index_)]
        recon, samples = model.reconstruct(), model.sample(100, seed=seed)
        recon_held_out = model.reconstruct(held_out)
        save_grid(samples[:64], out / f"{method}-samples.png", nrow=8)
        save_grid(reconstruction_pairs(X[:8], recon[:8], per_row=4), out / f"{method}-reconstructions.png", nrow=4)
        results[method] = {
            "n_train": len(X), "side": side, "epochs_run": model.epochs_run_, "updates": model.updates_,
            "batch_size": model.budget_.batch_size, "wall_time_s": wall, "timing": timing_summary(model.log_.rows),
            "recon_ssim_3d": reconstruction_ssim_3d(X, recon), "pfid_3d": proxy_fid_3d(fresh, samples, seed=seed),
            "recon_pfid_3d": proxy_fid_3d(fresh, recon_held_out, seed=seed),
            **memorisation(samples, X, held_out), "samples_show": anatomy_share(samples[:64]),
            "held_out_reconstructions_show": anatomy_share(recon_held_out[:64]),
            "parameters": model.n_parameters,
        }
        print(method, results[method], flush=True)
    write_json(out / "phantoms3d.json", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/phantoms"))
    parser.add_argument("-n", type=int, default=200, help="training volumes (default: 200)")
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--methods", default="neurosql,vae")
    parser.add_argument("--steps", type=int, default=None, help="budget in updates (default: automatic)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms and of training (default: 0)")
    parser.add_argument("--code-noise", type=float, default=None,
                        help="NeuroSQL's code noise f (default: its auto, 0.25 on volumes; see neurosql train --help)")
    args = parser.parse_args()
    budget = {} if args.steps is None else {"steps": args.steps}
    run(args.out, args.n, args.side, args.methods.split(","), args.seed, args.threads, args.code_noise, **budget)
