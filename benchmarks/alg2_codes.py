"""Do Algorithm 2's codes keep the spread of the lattice? (issue 13, point 2)

Trains NeuroSQL on 600 embedded MNIST digits (d = 16, 60 epochs, m = 64) and
reports the codes' coordinate std and mean norm against the lattice's, the
share of codes that moved in the last epochs, the best validation loss and
pFID / precision / recall of prior samples against the 1,000 test digits.

    python -m benchmarks.alg2_codes held '{}'                          # Alg. 2, the default
    python -m benchmarks.alg2_codes random '{"lattice_subset": "random"}'
    python -m benchmarks.alg2_codes alg1 '{"assign_batch": 0}'          # Algorithm 1 for reference

About 5-10 minutes a run on 2 busy CPU cores; samples go to alg2_<tag>.png.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from neurosql import NeuroSQL
from neurosql.data import load_data
from neurosql.evaluation import evaluate_model
from neurosql.report import save_grid


def run(tag: str, overrides: dict) -> dict:
    X = load_data("mnist5k", "train", limit=600, progress=False).images
    V = load_data("mnist5k", "val", progress=False).images
    T = load_data("mnist5k", "test", progress=False).images
    config = {**dict(latent_dim=16, epochs=60, assign_batch=64, seed=0, progress=False), **overrides}
    start = time.time()
    model = NeuroSQL(**config).fit(X, V)
    Z, Q = model.codes_.cpu(), model.lattice_.points
    metrics = evaluate_model(model, T, seed=0, light=True)
    save_grid(model.sample(64, seed=0), f"alg2_{tag}.png", nrow=8)
    return {
        "tag": tag, "config": overrides, "fit_s": round(time.time() - start),
        "std_codes": float(Z.std(0).mean()), "std_lattice": float(Q.std(0).mean()),
        "norm_codes": float(Z.norm(dim=1).mean()), "norm_lattice": float(Q.norm(dim=1).mean()),
        "moved_last_epochs": [round(r["changed"], 3) for r in model.log_.rows[-3:] if "changed" in r],
        "best_val_loss": min(r["val_loss"] for r in model.log_.rows if "val_loss" in r),
        **{k: metrics[k] for k in ("pfid", "kid", "precision", "recall")},
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})))
