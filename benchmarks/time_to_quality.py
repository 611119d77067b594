"""Wall time for NeuroSQL to reach the VAE's final proxy-FID (issue 7, target 4).

Both train on 2,000 embedded MNIST digits with the same ConvNet, batch size and
epoch budget; pFID (App. E) against the held-out test digits is measured after
every NeuroSQL epoch (outside the timed training) and once for the VAE at the
end. The ratio is NeuroSQL's training time to reach the VAE's final pFID over
the VAE's whole training time (< 1: NeuroSQL gets there sooner).

    python -m benchmarks.time_to_quality [--quick]   (--quick: QUICK_N images, 2 epochs, to check the code)
"""

from __future__ import annotations

import sys

import torch

from neurosql.data import load_data
from neurosql.methods import build_method
from neurosql.metrics import proxy_fid

EPOCHS = 15
COMMON = dict(latent_dim=16, generator="convnet", epochs=EPOCHS, batch_size=64, val_fraction=0.0, progress=False, seed=0)
TRAIN_KEYS = ("time_generator", "time_cost", "time_assign")
N, QUICK_N = 2000, 200


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(2)
    X = load_data(None, "train", limit=QUICK_N if quick else N, progress=False).images
    test = load_data(None, "test", limit=QUICK_N if quick else None, progress=False).images
    common = {**COMMON, "epochs": 2} if quick else COMMON
    vae = build_method("vae", **common).fit(X)
    vae_time = sum(r["time_generator"] for r in vae.log_.rows)
    vae_pfid = proxy_fid(test, vae.sample(len(test), seed=0))["pfid"]
    curve = []

    def track(model, row):
        elapsed = sum(r.get(k, 0.0) for r in model.log_.rows for k in TRAIN_KEYS)
        curve.append((row["epoch"], elapsed, proxy_fid(test, model.sample(len(test), seed=0))["pfid"]))

    build_method("neurosql", **common, assign_every=3).fit(X, callback=track)
    reached = next(((e, t, p) for e, t, p in curve if p <= vae_pfid), None)
    for e, t, p in curve:
        print(f"NeuroSQL epoch {e:>2}: {t:6.1f} s, pFID {p:.3f}")
    print(f"VAE after {common['epochs']} epochs: {vae_time:.1f} s, pFID {vae_pfid:.3f}")
    ratio = reached[1] / vae_time if reached else float("inf")
    return [{
        "name": "time_to_vae_quality", "ratio": ratio, "target": 1.0, "met": ratio <= 1.0,
        "vae_pfid": vae_pfid, "vae_time_s": vae_time, "reached_at_epoch": reached[0] if reached else None,
        "neurosql_curve": [{"epoch": e, "time_s": t, "pfid": p} for e, t, p in curve],
    }]


if __name__ == "__main__":
    row = run(quick="--quick" in sys.argv[1:])[0]
    print(row["name"], f"{row['ratio']:.3f}", "met" if row["met"] else "missed")
