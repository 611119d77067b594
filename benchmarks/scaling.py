"""Scaling of mini-batch quantile assignment (Algorithm 2) with n and m (paper App. F, Fig. 5).

For n from 1,000 to 60,000 synthetic 28×28 images (a uint8 memory map on
disk) and m ∈ {64, 128, 256}, one NeuroSQL epoch with an m×m assignment per
batch is timed in a fresh subprocess, which also reports its peak RSS; the
VAE and GAN epoch times at the same n and batch size follow for comparison.

    python -m benchmarks.scaling                          # writes benchmarks/scaling.{json,md,png}
    python -m benchmarks.scaling --sizes 1000,5000,20000  # a shorter sweep
    python -m benchmarks.scaling --plot                   # redraw scaling.png from the .json files

The plot adds the archive runs (benchmarks/archive.json: n up to 10⁵, the default
generator, its own thread count) as dashed lines, and every run's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (1_000, 5_000, 20_000, 60_000)
ASSIGN_BATCHES = (64, 128, 256)
WIDTH = 16  # a small generator: the benchmark is about how time grows with n and m


def synthetic_images(n: int, path: Path, seed: int = 0) -> Path:
    """n smooth random 28×28 uint8 images (a sum of Gaussian blobs), saved as .npy."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(28), np.arange(28), indexing="ij"), -1)  # (28, 28, 2)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
    for start in range(0, n, 5000):
        b = min(5000, n - start)
        centres = rng.uniform(6, 22, size=(b, 3, 1, 1, 2))
        blobs = np.exp(-((grid - centres) ** 2).sum(-1) / 12.0).sum(1)  # (b, 28, 28)
        out[start : start + b, 0] = (255 * blobs / blobs.max(axis=(1, 2), keepdims=True)).astype(np.uint8)
    out.flush()
    return path


def one_run(method: str, data: str, m: int) -> dict:
    """Train one epoch (with assignment, for NeuroSQL) in this process; time it and read peak RSS."""
    import torch

    from neurosql.methods import build_method

    torch.set_num_threads(2)
    X = np.load(data, mmap_mode="r")
    common = dict(latent_dim=16, width=WIDTH, epochs=2, batch_size=64, val_fraction=0.0, progress=False, seed=0)
    if method == "neurosql":
        model = build_method("neurosql", **common, assign_every=1, assign_batch=m, init="random")
        model.config.epochs = 2  # the timed row is epoch 1, which assigns in every batch
        model.fit(X)
    else:
        model = build_method(method, **common)
        model.fit(torch.from_numpy(np.asarray(X, dtype=np.float32) / 255.0))
    row = model.log_.rows[0]
    epoch = sum(v for k, v in row.items() if k.startswith("time_") and k != "time_val")
    return {
        "method": method,
        "n": len(X),
        "m": m if method == "neurosql" else None,
        "epoch_s": epoch,
        "s_per_1k_samples": 1000 * epoch / len(X),
        "time_generator": row["time_generator"],
        "time_cost": row.get("time_cost", 0.0),
        "time_assign": row.get("time_assign", 0.0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(sizes=SIZES, batches=ASSIGN_BATCHES, baselines=("vae", "gan")) -> list[dict]:
    """All runs, each in its own subprocess so that peak RSS is per run."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            data = synthetic_images(n, Path(tmp) / f"x{n}.npy")
            jobs = [("neurosql", m) for m in batches] + [(b, 0) for b in baselines]
            for method, m in jobs:
                start = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.scaling", "--one", method, str(data), str(m)],
                    check=True, capture_output=True, text=True, cwd=HERE.parent,
                )
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"n={n:>6} {method:<8} m={m or '-':>4}  epoch {rows[-1]['epoch_s']:7.2f} s  "
                      f"peak RSS {rows[-1]['peak_rss_mb']:7.0f} MB  ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def plot(rows: list[dict], path: Path, archive: list[dict] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_rate, ax_rss) = plt.subplots(1, 3, figsize=(16, 4))
    series = sorted({(r["method"], r["m"]) for r in rows}, key=lambda s: (s[0] != "neurosql", s[1] or 0))
    for method, m in series:
        pts = sorted((r["n"], r["epoch_s"], r["s_per_1k_samples"], r["peak_rss_mb"] / 1024) for r in rows
                     if (r["method"], r["m"]) == (method, m))
        label = f"NeuroSQL, m = {m}" if method == "neurosql" else method.upper()
        ns, times, rates, rss = zip(*pts)
        ax_time.plot(ns, times, "o-", label=label)
        ax_rate.plot(ns, rates, "o-", label=label)
        ax_rss.plot(ns, rss, "o-", label=label)
    for method in sorted({r["method"] for r in archive}):
        pts = sorted((r["n"], 1000 / r["images_per_s"], r["peak_rss_mb"] / 1024, r["m"], r.get("threads")) for r in archive
                     if r["method"] == method and r.get("processes", 1) == 1)
        ns, rates, rss, ms, threads = zip(*pts)
        label = (f"{'NeuroSQL, m = ' + str(ms[0]) if method == 'neurosql' else method.upper()} "
                 f"(archive: default width, {threads[0]} thread)")
        ax_rate.plot(ns, rates, "s--", label=label)
        ax_rss.plot(ns, rss, "s--", label=label)
    ax_time.set(xscale="log", yscale="log", xlabel="sample size N", ylabel="mean epoch time (s)", title="epoch time")
    ax_rate.set(xscale="log", xlabel="sample size N", ylabel="seconds per 1,000 samples", title="time per sample")
    ax_rss.set(xscale="log", xlabel="sample size N", ylabel="peak RSS of the process (GB)", title="memory")
    ax_time.legend(fontsize=7)
    ax_rss.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write(rows: list[dict]) -> None:
    """Merge with earlier sweeps (a new (method, n, m) row replaces an old one), then write all three files."""
    path = HERE / "scaling.json"
    key = lambda r: (r["method"], r["n"], r["m"] or 0)
    merged = {key(r): r for r in (json.loads(path.read_text()) if path.exists() else [])}
    merged.update({key(r): r for r in rows})
    rows = sorted(merged.values(), key=lambda r: (r["n"], r["method"] != "neurosql", r["method"], r["m"] or 0))
    path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| method | m | n | epoch (s) | s per 1k samples | cost (s) | assign (s) | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['m'] or '—'} | {r['n']:,} | {r['epoch_s']:.2f} | {r['s_per_1k_samples']:.3f} "
                     f"| {r['time_cost']:.2f} | {r['time_assign']:.2f} | {r['peak_rss_mb']:.0f} |")
    (HERE / "scaling.md").write_text("\n".join(lines) + "\n")
    plot(rows, HERE / "scaling.png", archive_rows())


def archive_rows() -> list[dict]:
    """The rows of benchmarks/archive.json, or none before it is written."""
    path = HERE / "archive.json"
    return json.loads(path.read_text()) if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated sample sizes n")
    parser.add_argument("--plot", action="store_true", help="only redraw scaling.png from scaling.json and archive.json")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "DATA", "M"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot:
        plot(json.loads((HERE / "scaling.json").read_text()), HERE / "scaling.png", archive_rows())
        return
    if args.one:
        print(json.dumps(one_run(args.one[0], args.one[1], int(args.one[2]))))
        return
    rows = run(sizes=[int(n) for n in args.sizes.split(",")])
    write(rows)
    print(f"wrote {HERE / 'scaling.md'} and {HERE / 'scaling.png'}")


if __name__ == "__main__":
    main()
