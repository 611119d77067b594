"""Quality out of the box on small data sets that ship offline (issue 10).

Every set is trained once with the default configuration (nothing but the
data) and on a small grid of learning rate × batch size × budget, and scored on
held-out images: proxy-FID, KID, precision, recall (App. E features), plus the
reconstruction SSIM of the training images and the wall time of ``fit``.

    python -m benchmarks.small_data                    # every set, defaults and grid
    python -m benchmarks.small_data --sets mnist-100 --no-grid

Results are cached per (set, configuration) in ``benchmarks/small_data.json``
(a changed configuration is a new key), so an interrupted sweep continues; the
table goes to ``benchmarks/small_data.md``.

Sets: the embedded MNIST digits at n ∈ {100, 300, 1,000, 3,500} (28 px) and
n = 300 at 64 px, held out on the 1,000 test digits; scikit-learn's 8×8
``load_digits`` resized to 32 px; the 100 LFW faces of scikit-image at 32 px;
64-px grayscale patches of a fundus photograph, brick, grass, gravel and a
camera picture; 32-px (and 64-px) RGB patches of scikit-image's colour photographs, of its colour
fundus photograph (a set the colour loss was not tuned on) and random-colour shapes
(issue 21; these RGB sets also record the colour metrics); and sets like our users'
(issue 20, :mod:`benchmarks.user_sets`): brain-like slices with cortex texture, cell
fields, and axial slices of the 3-D phantom heads (smooth anatomy).
Non-MNIST sets hold out a seeded 20 %. ``make quality`` runs the defaults over three seeds
on the sets like our users'; ``python -m benchmarks.write_set SET DIR`` writes a set as PNGs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neurosql import NeuroSQL
from neurosql.data import load_data
from neurosql.evaluation import GAP_IMAGES, at_the_codes
from neurosql.metrics import colour_error, colour_fd, evaluate_images, memorisation, reconstruction_ssim
from neurosql.metrics.sampling_gap import BLURRED_BELOW, TOLD_APART
from neurosql.persistence import write_text

from benchmarks.user_sets import brain_slices, cell_fields, phantom_slices

HERE = Path(__file__).resolve().parent
SEED = 0


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W[, C]) floats in [0, 1] → (n, C, size, size), antialiased Lanczos."""
    out = []
    for x in images:
        img = Image.fromarray((np.clip(x, 0, 1) * 255).round().astype(np.uint8))
        out.append(np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.float32) / 255)
    out = np.stack(out)
    return out[:, None] if out.ndim == 3 else out.transpose(0, 3, 1, 2)


def _holdout(X: np.ndarray, fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    order = np.random.default_rng(SEED).permutation(len(X))
    n_test = int(round(fraction * len(X)))
    return torch.from_numpy(X[order[n_test:]]), torch.from_numpy(X[order[:n_test]])


def _patches(pictures: list[np.ndarray], per_picture: int, crop: int, size: int) -> np.ndarray:
    """``per_picture`` seeded random crop×crop patches of each picture, resized to size×size."""
    rng = np.random.default_rng(SEED)
    out = []
    for pic in pictures:
        pic = pic.astype(np.float32) / 255
        for _ in range(per_picture):
            i, j = rng.integers(0, pic.shape[0] - crop + 1), rng.integers(0, pic.shape[1] - crop + 1)
            out.append(pic[i : i + crop, j : j + crop])
    return _resize(np.stack(out), size)


def mnist(n: int, resolution: int = 28):
    def load():
        train = load_data(None, "train", limit=n, resolution=resolution, progress=False).images
        return train, load_data(None, "test", resolution=resolution, progress=False).images
    return load


def digits32():
    from sklearn.datasets import load_digits

    return _holdout(_resize(load_digits().images / 16.0, 32))


def faces32():
    from skimage import data

    return _holdout(_resize(data.lfw_subset()[:100], 32))  # the first 100 of the subset are faces


def gray64():
    from skimage import data

    retina = data.retina()[::2, ::2, 1]  # the green channel carries a fundus photograph's contrast
    pictures = [retina, data.brick(), data.grass(), data.gravel(), data.camera()]
    return _holdout(_patches(pictures, 72, 96, 64))


def rgb_pictures() -> list[np.ndarray]:
    """scikit-image's colour photographs: a person, a cat, a cup, a rocket and a stained tissue section."""
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]


def rgb32():
    return _holdout(_patches(rgb_pictures(), 72, 64, 32))


def rgb64():
    return _holdout(_patches(rgb_pictures(), 48, 128, 64))


def brain64():
    return _holdout(brain_slices(250))


def phantoms64():
    return _holdout(phantom_slices(250))


def cells64():
    return _holdout(cell_fields(300))


def colour_shapes(n: int, size: int = 32, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """n seeded images of one disc or square of a uniformly random RGB colour on a background of
    another: (n, 3, size, size) images and (n, 1, size, size) masks of the shapes' pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] + 0.5
    images, masks = np.empty((n, 3, size, size), np.float32), np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        r = rng.uniform(0.15, 0.3) * size
        cy, cx = rng.uniform(r, size - r, 2)
        disc = rng.random() < 0.5
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if disc else np.maximum(abs(yy - cy), abs(xx - cx)) <= r
        colour, background = rng.random(3), rng.random(3)
        images[i] = np.where(mask, colour[:, None, None], background[:, None, None])
        masks[i, 0] = mask
    return images, masks


def shapes32():
    images, _ = colour_shapes(200)
    return _holdout(images)


def fundus32():
    """RGB patches of scikit-image's colour fundus photograph: a colour set the colour loss was not tuned on."""
    from skimage import data

    return _holdout(_patches([data.retina()], 240, 128, 32))


SETS = {
    "mnist-100": mnist(100),
    "mnist-300": mnist(300),
    "mnist-1000": mnist(1000),
    "mnist-3500": mnist(3500),
    "mnist-300@64": mnist(300, 64),
    "digits@32": digits32,
    "faces@32": faces32,
    "gray-patches@64": gray64,
    "rgb-patches@32": rgb32,
    "rgb-patches@64": rgb64,
    "brain@64": brain64,
    "cells@64": cells64,
    "phantom-slices@64": phantoms64,
    "colour-shapes@32": shapes32,
    "fundus-rgb@32": fundus32,
}

# The grid around the defaults: the paper's and a 10× learning rate, two batch sizes, at 2,000 updates
# (the automatic floor); the budget axis is the defaults' automatic one against the paper's epochs (--params).
GRID = [{"lr": lr, "batch_size": b, "steps": 2000} for lr in (2e-4, 2e-3) for b in (16, 64)]


SAMPLE_KEYS = ("pfid", "kid", "precision", "recall", "nn1_accuracy_vgg", "nn1_fake_vgg", "fd_vgg", "precision_vgg",
               "recall_vgg", "memorisation_ratio", "memorisation_ratio_2nn", "copy_fraction", "colour_fd",  # colour_fd: RGB only
               "gap_nn1_vgg", "sharpness_ratio")  # against G at the training codes, as every run's evaluation
RECON_KEYS = ("pfid", "fd_vgg", "precision_vgg", "recall_vgg")  # of held-out reconstructions G(encode(x)),
# the ceiling of what G draws for new images of the set; prior_* are the samples of the paper's prior draws
FIT_KEYS = ("nn1_accuracy_vgg", "nn1_fake_vgg")  # of G at the training codes against the held-out images: the
# 1-NN test's ceiling (held-out reconstructions would each find their own source as nearest neighbour)


def run_one(name: str, params: dict, seed: int = SEED) -> dict:
    """Fit NeuroSQL with ``params`` (on top of the defaults) and ``seed`` on one set and score it
    (the split and the test images do not depend on the seed)."""
    train, test = SETS[name]()
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = NeuroSQL(**params, seed=seed, progress=False, device="cpu").fit(train)
    wall = time.perf_counter() - start
    fitted, reconstructed = train[torch.as_tensor(model.train_index_)], model.reconstruct()
    score = lambda images, ceiling=None: evaluate_images(test, images, n=len(test), seed=SEED, n_nearest=1,
                                                         kid_subsets=20, kid_subset_size=min(1000, len(test) // 2),
                                                         ceiling=ceiling)
    ceiling, _ = at_the_codes(model, max(len(test), GAP_IMAGES), SEED)  # behind the sampling gap, as in evaluate_model
    quality = lambda images: {k: v for k, v in (score(images, ceiling) | memorisation(images, fitted, test)).items()
                              if k in SAMPLE_KEYS}
    m = max(len(test), GAP_IMAGES)
    prior = model.decode(model.lattice_.sample_prior(m, torch.Generator().manual_seed(seed)))  # the paper's samples
    colour = {} if train.shape[1] != 3 else {  # real vs real: the training images against the held-out ones
        "colour_fd_real": colour_fd(train, test), "recon_colour_error": colour_error(fitted, reconstructed)}
    return {**colour,
        "set": name, "params": params, "seed": seed, "n_train": len(train), "n_test": len(test),
        **quality(model.sample(m, seed=seed)), **{f"prior_{k}": v for k, v in quality(prior).items()},
        **{f"recon_{k}": v for k, v in score(model.reconstruct(test)).items() if k in RECON_KEYS},
        **{f"fit_{k}": v for k, v in score(reconstructed).items() if k in FIT_KEYS},
        "recon_ssim": reconstruction_ssim(fitted, reconstructed), "wall_s": wall,
        "epochs_run": model.epochs_run_, "updates": model.updates_,
        "resolved": {"lr": model.config.lr, "batch_size": model.budget_.batch_size, "epochs": model.budget_.epochs,
                     "latent_dim": model.config.latent_dim, "sampler": model.config.sampler,
                     "sampler_bandwidth": model.bandwidth_, "copy_ratio": model.copy_ratio_},
    }


def label(params: dict) -> str:
    """A configuration as one canonical string (the same parameters give the same text)."""
    return json.dumps(params, sort_keys=True)


def key(name: str, params: dict, seed: int = SEED) -> str:
    return name + " " + label(params) + (f" seed {seed}" if seed != SEED else "")


def write_table(results: dict, path: Path) -> None:
    """Per set: the default row, the best grid row by pFID and the ratio of the two pFIDs; then
    every other configuration run (ablations such as ``--params '{"ema": 0}'``), one row each."""
    header = [
        "| set | n | run | lr · batch · updates | pFID ↓ | KID ↓ | precision ↑ | recall ↑ | recon SSIM ↑ | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row(name, title, r):
        res = r["resolved"]
        return (f"| {name} | {r['n_train']} | {title} | {res['lr']:g} · {res['batch_size']} · {r['updates']} | "
                f"{r['pfid']:.3f} | {r['kid']:.4f} | {r['precision']:.2f} | {r['recall']:.2f} | "
                f"{r['recon_ssim']:.2f} | {r['wall_s']:.0f} |")

    lines, others = list(header), []
    for name in SETS:
        rows = [r for r in results.values() if r["set"] == name and r.get("seed", SEED) == SEED]
        default = next((r for r in rows if not r["params"]), None)
        grid = [r for r in rows if r["params"] in GRID]
        best = min(grid, key=lambda r: r["pfid"]) if grid else None
        lines += [row(name, title, r) for title, r in (("defaults", default), ("best of grid", best)) if r is not None]
        if default and best:
            lines.append(f"| {name} | | defaults / best pFID | | **{default['pfid'] / best['pfid']:.2f}×** | | | | | |")
        others += [row(name, "`" + label(r["params"]) + "`", r)
                   for r in rows if r["params"] and r["params"] not in GRID]
    if others:
        lines += ["", "Other configurations (defaults plus the parameters shown):", "", *header, *others]
    lines += _seed_table(results) + _quality_table(results) + _colour_table(results)
    write_text(path, "\n".join(lines) + "\n")


def _colour_table(results: dict) -> list[str]:
    """Colour of the RGB runs (issue 21): samples' colour FD against real vs real, the reconstructions'
    colour error, and the VGG-feature FD, precision and recall; mean over the seeds run."""
    groups: dict[tuple, list[dict]] = {}
    for r in results.values():
        if "colour_fd" in r:
            groups.setdefault((r["set"], label(r["params"])), []).append(r)
    mean = lambda rs, k: np.mean([r[k] for r in rs]) if all(r[k] is not None for r in rs) else float("nan")
    lines = [f"| {name} | {'defaults' if params == '{}' else '`' + params + '`'} | {len(rs)} | "
             f"{mean(rs, 'colour_fd'):.4f} | {mean(rs, 'colour_fd_real'):.4f} | {mean(rs, 'recon_colour_error'):.3f} | "
             f"{mean(rs, 'fd_vgg'):.3f} | {mean(rs, 'precision_vgg'):.2f} | {mean(rs, 'recall_vgg'):.2f} |"
             for (name, params), rs in sorted(groups.items())]
    if not lines:
        return []
    return ["", "Colour (RGB sets; mean over seeds):", "",
            "| set | run | seeds | colour FD ↓ | real vs real | recon colour error ↓ | VGG FD ↓ | VGG precision ↑ | VGG recall ↑ |",
            "|---|---|---|---|---|---|---|---|---|", *lines]


def _seed_table(results: dict) -> list[str]:
    """Mean ± sd over training seeds of every (set, configuration) run with more than one seed:
    on 72 test images one run's pFID moves by tens of per cent with the seed alone."""
    groups: dict[tuple, list[dict]] = {}
    for r in results.values():
        groups.setdefault((r["set"], label(r["params"])), []).append(r)
    lines = []
    for (name, params), rs in sorted(groups.items(), key=lambda g: (list(SETS).index(g[0][0]), g[0][1] != "{}", g[0][1])):
        if len(rs) < 2:
            continue
        cells = [f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" for v in
                 ([r[m] for r in rs] for m in ("pfid", "kid", "precision", "recall", "recon_ssim"))]
        updates = f"{np.mean([r['updates'] for r in rs]):.0f}"
        lines.append(f"| {name} | {'defaults' if params == '{}' else '`' + params + '`'} | {len(rs)} | {updates} | "
                     + " | ".join(cells) + " |")
    if not lines:
        return []
    return ["", "Over training seeds (mean ± sd; `--seeds 0,1,2`):", "",
            "| set | run | seeds | updates | pFID ↓ | KID ↓ | precision ↑ | recall ↑ | recon SSIM ↑ |",
            "|---|---|---|---|---|---|---|---|---|", *lines]


def _quality_table(results: dict) -> list[str]:
    """Per (set, configuration), the mean over seeds of what sees sample quality, for the model's own
    samples and for the paper's prior draws from the same model: the VGG-feature 1-NN test (beside it
    that of G at the training codes; runs from before the test show nan), FD, precision, recall,
    the FD over that of held-out reconstructions (the ceiling of what G draws), and the memorisation
    ratio and its 2-NN form (samples are copies well below 1 by both; runs from before the 2-NN form show nan)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results.values():
        if r.get("fd_vgg") is not None and "sampler" in r["resolved"]:  # runs recording what sampled them
            groups.setdefault((r["set"], label(r["params"])), []).append(r)
    lines = []
    for (name, params), rs in sorted(groups.items(), key=lambda g: (list(SETS).index(g[0][0]), g[0][1] != "{}", g[0][1])):
        mean = lambda k: float(np.mean([r[k] if r.get(k) is not None else np.nan for r in rs]))
        res = rs[0]["resolved"]
        for sampler, p in ((res["sampler"], ""), ("prior (paper)", "prior_")):
            lines.append(
                f"| {name} | {'defaults' if params == '{}' else '`' + params + '`'} | {res['latent_dim']} | {sampler} | "
                f"{len(rs)} | {mean(p + 'nn1_accuracy_vgg'):.2f} / {mean(p + 'nn1_fake_vgg'):.2f} | "
                f"{mean('fit_nn1_accuracy_vgg'):.2f} / {mean('fit_nn1_fake_vgg'):.2f} | "
                f"{mean(p + 'pfid'):.3f} | {mean(p + 'fd_vgg'):.3f} | "
                f"{mean(p + 'fd_vgg') / mean('recon_fd_vgg'):.2f} | {mean(p + 'precision_vgg'):.2f} | "
                f"{mean(p + 'recall_vgg'):.2f} | {mean(p + 'memorisation_ratio'):.2f} / {mean(p + 'memorisation_ratio_2nn'):.2f} | "
                f"{mean(p + 'copy_fraction'):.2f} | "
                f"{mean(p + 'gap_nn1_vgg'):.2f} / {mean(p + 'sharpness_ratio'):.2f} |")
            if res["sampler"] == "prior":
                break
    if not lines:
        return []
    return ["", "Samples as pretrained VGG features see them (mean over seeds); 1-NN is the balanced leave-one-out "
            "1-NN accuracy of telling them from held-out images / its generated side (0.5 best, 1 always told apart), "
            "beside the same for G at the training codes (its ceiling); FD ÷ recon is the samples' VGG-FD over that "
            "of the reconstructions; gap is the sampling gap against G at the training codes (VGG 1-NN, 0.5 best, "
            f"a warning from {TOLD_APART} / edge sharpness ratio, 1 best, a warning below {BLURRED_BELOW}; runs from "
            "before it show nan):", "",
            "| set | run | d | sampler | seeds | 1-NN / fake side (VGG) → 0.5 | at the codes | pFID ↓ | VGG-FD ↓ | "
            "FD ÷ recon ↓ | VGG precision ↑ | VGG recall ↑ | memorisation ratio (≥ 0.8) / 2-NN (≥ 0.9) | copy fraction | "
            "gap: 1-NN / sharpness |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *lines]


def sweep_arguments(doc: str, sets: str, stem: str) -> argparse.ArgumentParser:
    """The options every sweep over SETS shares: sets, seeds, its cache and table (``stem``.json, .md), threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--sets", default=sets, help="comma-separated set names")
    parser.add_argument("--seeds", default=str(SEED), help="comma-separated training seeds (default: 0)")
    parser.add_argument("--cache", default=str(HERE / f"{stem}.json"))
    parser.add_argument("--table", default=str(HERE / f"{stem}.md"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2, the cores here)")
    return parser


def load_cache(args: argparse.Namespace) -> dict:
    """Set the threads and read the results cached so far."""
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    return json.loads(cache.read_text()) if cache.is_file() else {}


def main(argv: list[str] | None = None) -> None:
    parser = sweep_arguments(__doc__, ",".join(SETS), "small_data")
    parser.epilog = "More than one of --seeds adds a mean ± sd table."
    parser.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True, help="also run the grid")
    parser.add_argument("--params", default=None, help="one extra configuration as JSON, e.g. '{\"lr\": 0.001}'")
    args = parser.parse_args(argv)
    cache, results = Path(args.cache), load_cache(args)
    configs = [{}] + (GRID if args.grid else []) + ([json.loads(args.params)] if args.params else [])
    for name in args.sets.split(","):
        if name not in SETS:
            raise SystemExit(f"error: unknown set '{name}'; choose from {', '.join(SETS)}")
        for params, seed in [(p, int(s)) for p in configs for s in args.seeds.split(",")]:
            k = key(name, params, seed)
            if k in results and "gap_nn1_vgg" in results[k]:  # runs from before the sampling gap are run again
                continue
            results[k] = run_one(name, params, seed)
            r = results[k]
            print(f"{name:<16} {label(params):<48} seed {seed} pFID {r['pfid']:.3f} P {r['precision']:.2f} "
                  f"R {r['recall']:.2f} recon {r['recon_ssim']:.2f} {r['wall_s']:.0f} s", flush=True)
            write_text(cache, json.dumps(results, indent=1) + "\n")  # atomic: a killed sweep keeps its cache
    write_table(results, Path(args.table))
    print(Path(args.table).read_text())


if __name__ == "__main__":
    main()
