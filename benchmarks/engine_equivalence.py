"""The same training, scored the same way, on two versions of the code (issue 11: behaviour unchanged
by the one-engine refactor). Each method trains on 1,000 embedded digits (d = 8, 8 epochs, defaults
otherwise) and 1,000 samples are scored against 1,000 test digits; the GAN also with seeds 1 and 2.

    git worktree add /tmp/before 7e4aa3a
    PYTHONPATH=/tmp/before/src python -m benchmarks.engine_equivalence runs/equiv-before.json
    python -m benchmarks.engine_equivalence runs/equiv-after.json

The script uses only the API both versions share (``neurosql.methods.build_method``).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from neurosql.data import load_data
from neurosql.methods import build_method
from neurosql.metrics import evaluate_images

RUNS = [(kind, 0) for kind in ("neurosql", "vae", "gan", "ddpm")] + [("gan", 1), ("gan", 2)]


def main(out: str) -> None:
    torch.set_num_threads(1)
    X = load_data(None, "train", limit=1000, progress=False).images
    T = load_data(None, "test", progress=False).images[:1000]
    results = {}
    for kind, seed in RUNS:
        start = time.perf_counter()
        model = build_method(kind, latent_dim=8, epochs=8, progress=False, seed=seed, device="cpu").fit(X)
        samples = model.sample(1000, seed=0)
        metrics = evaluate_images(T, samples, seed=0)
        results[f"{kind} seed {seed}"] = {
            **{k: metrics[k] for k in ("pfid", "kid", "precision", "recall")},
            "updates": model.updates_, "wall_s": time.perf_counter() - start,
            "pixel_sum_first_4": float(samples[:4].sum()),  # equal sums: the same samples, for practical purposes
        }
        print(kind, seed, results[f"{kind} seed {seed}"], flush=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
