"""Where the samples sit between copies and mush (issue 20): the kernel sampler's bandwidth swept on one model.

NeuroSQL draws z near its training codes (a Gaussian kernel of bandwidth f·h,
the copy guard choosing f after training). Narrow kernels give copies of
training images, wide ones and the prior give blends. For each set and
training configuration this trains one model and scores 200 draws at each f
and from the prior: the sampling gap against G at the training codes
(VGG 1-NN → 0.5, sharpness ratio → 1), fit SSIM, and the memorisation ratio
(≥ 0.8: not copies) against the held-out images. A training change that
helps moves the whole row up (sharper, less told apart) at the same
memorisation; a sampler alone moves along it.

    python -m benchmarks.sampling_frontier                          # colour shapes, faces
    python -m benchmarks.sampling_frontier --sets faces@32 --params '{"latent_dim": 8}'

Results are cached in ``benchmarks/sampling_frontier.json``; the table goes to
``benchmarks/sampling_frontier.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks.small_data import SEED, SETS, key, label, load_cache, sweep_arguments
from neurosql import NeuroSQL
from neurosql.evaluation import at_the_codes
from neurosql.methods.code_sampling import BANDWIDTHS, kernel_draws
from neurosql.metrics import VGGFeatureNet, extract_features, load_stlpips, memorisation, sampling_gap
from neurosql.persistence import write_text

FACTORS = (0.5, 2 ** -0.5, *BANDWIDTHS)  # f of the kernel's bandwidth f·h: narrower, then those the copy guard
# tries; None below is the prior
DRAWS = 200  # images per sampler, as the evaluation's sampling gap
CONFIGS = ({}, {"code_noise": 0.25}, {"latent_dim": 8}, {"redraw_lattice": 0.75})


def frontier(name: str, params: dict, seed: int = SEED) -> dict:
    """Train on ``name`` with ``params`` and score DRAWS draws per bandwidth factor and from the prior."""
    train, test = SETS[name]()
    model = NeuroSQL(**params, seed=seed, progress=False, device="cpu").fit(train)
    ceiling, fitted = at_the_codes(model, DRAWS, seed, train)
    net = VGGFeatureNet(load_stlpips())
    f_ceiling = extract_features(net, ceiling)
    rows = []
    for f in (*FACTORS, None):
        generator = torch.Generator().manual_seed(seed)
        z = (model.lattice_.sample_prior(DRAWS, generator) if f is None else
             kernel_draws(model.codes_, generator)(DRAWS, f))
        images = model.decode(z)
        gap = sampling_gap(images, ceiling, extract_features(net, images), f_ceiling, fitted=fitted)
        mem = memorisation(images, fitted, test)
        rows.append({"factor": f, "gap_nn1_vgg": gap["gap_nn1_vgg"], "sharpness_ratio": gap["sharpness_ratio"],
                     "memorisation_ratio": mem["memorisation_ratio"],
                     "memorisation_ratio_2nn": mem["memorisation_ratio_2nn"], "copy_fraction": mem["copy_fraction"]})
    return {"set": name, "params": params, "seed": seed, "n_train": len(model.codes_), "n_test": len(test),
            "fit_ssim": gap["fit_ssim"], "guard_factor": model.bandwidth_, "rows": rows}


def write_table(results: dict, path: Path) -> None:
    lines = ["Draws at f·h around the training codes, and from the prior; the factor the copy guard chose is "
             "marked ← (gap: VGG 1-NN against G at the codes → 0.5 / sharpness ratio → 1; memorisation ≥ 0.8 "
             "or its 2-NN form ≥ 0.9: not copies, on the held-out images; — where a run predates the 2-NN form):",
             "", "| set | run | seed | fit SSIM | sampler | gap 1-NN | sharpness | memorisation / 2-NN | copy fraction |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        for row in r["rows"]:
            f = row["factor"]
            chosen = " ←" if f == r["guard_factor"] else ""
            sampler = "prior" if f is None else f"kernel {f:.2f} h"
            two = "—" if row.get("memorisation_ratio_2nn") is None else f"{row['memorisation_ratio_2nn']:.2f}"
            lines.append(f"| {r['set']} | {label(r['params']) if r['params'] else 'defaults'} | {r['seed']} | "
                         f"{r['fit_ssim']:.2f} | {sampler}{chosen} | {row['gap_nn1_vgg']:.2f} | "
                         f"{row['sharpness_ratio']:.2f} | {row['memorisation_ratio']:.2f} / {two} | "
                         f"{row['copy_fraction']:.2f} |")
    write_text(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = sweep_arguments(__doc__, "colour-shapes@32,faces@32", "sampling_frontier")
    parser.add_argument("--params", default=None, help="one configuration as JSON instead of the three built in")
    args = parser.parse_args(argv)
    cache, results = Path(args.cache), load_cache(args)
    configs = [json.loads(args.params)] if args.params else CONFIGS
    for name in args.sets.split(","):
        if name not in SETS:
            raise SystemExit(f"error: unknown set '{name}'; choose from {', '.join(SETS)}")
        for params, seed in [(p, int(s)) for p in configs for s in args.seeds.split(",")]:
            k = key(name, params, seed)
            if k not in results:
                results[k] = frontier(name, params, seed)
                print(f"{k}: done", flush=True)
                write_text(cache, json.dumps(results, indent=1) + "\n")
    write_table(results, Path(args.table))
    print(Path(args.table).read_text())


if __name__ == "__main__":
    main()
