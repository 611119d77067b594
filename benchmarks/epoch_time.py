"""Epoch time of NeuroSQL against the VAE, and our generator step against a bare loop (issue 7, target 3).

Same ConvNet backbone, data (2,000 embedded MNIST digits), batch size and
epochs. NeuroSQL's epoch counts its assignment work (G(Q), the cost matrix and
the solver) amortised over K; validation is excluded for both methods.

    python -m benchmarks.epoch_time [--quick]   (--quick: QUICK_N images, 2 epochs, to check the code)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from neurosql.data import load_data
from neurosql.core.losses import loss_per_sample
from neurosql.methods import build_method

COMMON = dict(latent_dim=16, generator="convnet", epochs=6, batch_size=64, val_fraction=0.0, progress=False, seed=0)
N, QUICK_N = 2000, 200


def bare_epoch(model, X: torch.Tensor) -> float:
    """One epoch of the same forward/backward/clip/update as NeuroSQL's generator step, as plain PyTorch."""
    G = model.generator_
    codes = model.codes_
    opt = torch.optim.AdamW(G.parameters(), lr=model.config.lr, weight_decay=model.config.weight_decay)
    G.train()
    start = time.perf_counter()
    for idx in torch.randperm(len(X)).split(model.config.batch_size):
        loss = loss_per_sample(G(codes[idx]), X[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(G.parameters(), model.config.grad_clip)
        opt.step()
    return time.perf_counter() - start


def steady_epoch(rows: list[dict], K: int) -> dict:
    """Seconds per epoch once training runs on: the generator every epoch, G(Q), the cost and
    the solver once every K epochs (a short run's last epoch, which never assigns, would
    otherwise dilute them)."""
    def mean(key):
        return float(np.mean([r[key] for r in rows if key in r]))

    generator, cost, solve = mean("time_generator"), mean("time_cost") / K, mean("time_assign") / K
    return {"generator_s_per_epoch": generator, "cost_s_per_epoch_amortised": cost,
            "assign_s_per_epoch_amortised": solve, "epoch_s": generator + cost + solve}


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(2)
    X = load_data(None, "train", limit=QUICK_N if quick else N, progress=False).images
    common = {**COMMON, "epochs": 4} if quick else COMMON  # the round at epoch 3 still runs
    neurosql = build_method("neurosql", **common, assign_every=3).fit(X)
    vae = build_method("vae", **common).fit(X)
    t_neurosql = steady_epoch(neurosql.log_.rows, neurosql.config.assign_every)
    t_vae = float(np.mean([r["time_generator"] for r in vae.log_.rows]))
    ours = float(np.median([r["time_generator"] for r in neurosql.log_.rows]))
    bare = float(np.median([bare_epoch(neurosql, X) for _ in range(1 if quick else 3)]))
    print(f"NeuroSQL epoch {t_neurosql['epoch_s']:.2f} s (generator {t_neurosql['generator_s_per_epoch']:.2f}, "
          f"cost {t_neurosql['cost_s_per_epoch_amortised']:.2f}, assign {t_neurosql['assign_s_per_epoch_amortised']:.3f}"
          f" amortised over K=3); VAE epoch {t_vae:.2f} s")
    print(f"generator step: ours {ours:.2f} s per epoch, bare PyTorch loop {bare:.2f} s")
    epoch_ratio = t_neurosql["epoch_s"] / t_vae
    step_ratio = ours / bare
    return [
        {"name": "epoch_time_vs_vae", "ratio": epoch_ratio, "target": 0.85, "met": epoch_ratio <= 0.85,
         "neurosql_epoch_s": t_neurosql, "vae_epoch_s": t_vae, "n": len(X), "batch_size": COMMON["batch_size"]},
        {"name": "generator_step_vs_bare_loop", "ratio": step_ratio, "target": 1.10, "met": step_ratio <= 1.10,
         "ours_s": ours, "bare_s": bare},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row["name"], f"{row['ratio']:.3f}", "met" if row["met"] else "missed")
