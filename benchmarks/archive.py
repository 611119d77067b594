"""Archive scale: Algorithm 2 against the VAE on n ∈ {10⁴, 3·10⁴, 10⁵} images (issue 25, target 3).

The images are built offline from the embedded training digits (k of them):
image i is digit i mod k shifted by a seeded (dy, dx) ∈ [-3, 3]², kept as
a uint8 memory map on disk that Algorithm 2 reads batch by batch. Each run
trains for a fixed number of updates at batch m (rounded up to whole epochs;
the table gives the count) in its own process, which
reports its own peak RSS, the images per second of ``fit``, the assignment's
share of that time (G(Q_K), the m×m costs and solves) and the proxy-FID of
1,000 samples against the held-out test digits; the VAE runs at the same batch
and number of updates (it reads the images into memory). Each process uses
``--threads`` torch threads (1 by default: on a shared 2-core machine a second
thread measures the neighbour's load more than the code).

With ``--torchrun P`` every run is made twice, one after the other: in one
process, then in P processes under ``torchrun --standalone`` (gloo on the CPU),
each holding a shard of the images and codes; an update then takes m images in
each process (m·P in all), images/s counts all of them, the peak RSS is the
largest process's and the assignment share rank 0's.

    python -m benchmarks.archive                 # writes benchmarks/archive.{json,md}
    python -m benchmarks.archive --quick         # n = 2,000, a few updates, writes nothing
    python -m benchmarks.archive --sizes 10000 --torchrun 2   # writes benchmarks/archive_torchrun2.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (10_000, 30_000, 100_000)
M, UPDATES = 256, 400  # batch (Alg. 2's m) and updates of every run
QUICK = dict(sizes=(2_000,), m=64, updates=20)
SHIFT = 3  # largest shift in pixels: the digits' empty border is about 4


def shifted_digits(n: int, path: Path, seed: int = 0) -> Path:
    """n seeded shifts of the embedded training digits, saved as a (n, 1, 28, 28) uint8 .npy."""
    from neurosql.data import load_data

    digits = (load_data(None, "train", progress=False).images.numpy() * 255).round().astype(np.uint8)  # (k, 1, 28, 28)
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *digits.shape[1:]))
    for start in range(0, n, len(digits)):
        block = digits[: min(len(digits), n - start)]
        dy, dx = rng.integers(-SHIFT, SHIFT + 1, size=(2, len(block)))
        for j, (a, b) in enumerate(zip(dy, dx)):
            out[start + j] = np.roll(block[j], (a, b), axis=(-2, -1))
    out.flush()
    return path


def one_run(method: str, data: str, m: int, updates: int, threads: int) -> dict | None:
    """Train ``updates`` steps of batch m in this process; its speed, assignment share, pFID and peak RSS.
    Under torchrun every process trains and rank 0 alone returns the row (the others None)."""
    import torch
    import torch.distributed as dist

    from neurosql.data import load_data
    from neurosql.methods import build_method
    from neurosql.metrics import proxy_fid

    torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    X = np.load(data, mmap_mode="r")
    common = dict(latent_dim=16, steps=updates, batch_size=m, val_fraction=0.0, progress=False, seed=0)
    if method == "neurosql":
        model = build_method("neurosql", **common, assign_batch=m)
    else:
        model = build_method(method, **common)
        X = torch.from_numpy(np.asarray(X, dtype=np.float32) / 255.0)
    start = time.perf_counter()
    model.fit(X)
    wall = time.perf_counter() - start
    assign = sum(r.get("time_cost", 0.0) + r.get("time_assign", 0.0) for r in model.log_.rows)
    rss = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024] * world
    if world > 1:  # every process's peak, then rank 0 alone samples and reports
        dist.all_gather_object(rss, rss[0])
        if dist.get_rank() != 0:
            return None
    test = load_data(None, "test", progress=False).images
    return {
        "method": method, "n": len(X), "m": m, "processes": world, "threads": threads, "updates": model.updates_,
        "fit_s": wall, "images_per_s": model.updates_ * m * world / wall, "assignment_share": assign / wall,
        "pfid": proxy_fid(test, model.sample(1000, seed=0))["pfid"], "peak_rss_mb": max(rss),
    }  # fmt: skip


def run(sizes=SIZES, m: int = M, updates: int = UPDATES, threads: int = 1, processes: int = 1) -> list[dict]:
    """NeuroSQL (Alg. 2) and the VAE at every size, each run in its own process; with ``processes`` > 1
    each run once in one process and at once after in ``processes`` (torchrun), so that the two see the
    same load and their images/s give the speed-up."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            data = shifted_digits(n, Path(tmp) / f"x{n}.npy")
            for method in ("neurosql", "vae"):
                for p in sorted({1, processes}):
                    launch = [sys.executable, *(["-m", "torch.distributed.run", "--standalone",
                                                 f"--nproc_per_node={p}"] if p > 1 else [])]
                    one = ["-m", "benchmarks.archive", "--threads", str(threads), "--one", method, str(data), str(m),
                           str(updates)]
                    out = subprocess.run([*launch, *one], check=True, capture_output=True, text=True, cwd=HERE.parent)
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    r = rows[-1]
                    print(f"n={n:>7,} {method:<8} x{p} {r['images_per_s']:7.0f} images/s  assignment "
                          f"{r['assignment_share']:5.1%}  pFID {r['pfid']:.3f}  peak RSS {r['peak_rss_mb']:6.0f} MB",
                          flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| method | n | m | processes | updates | images/s | assignment share | pFID | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['n']:,} | {r['m']} | {r['processes']} | {r['updates']} | {r['images_per_s']:.0f} | "
              f"{r['assignment_share']:.1%} | {r['pfid']:.3f} | {r['peak_rss_mb']:.0f} |" for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 2,000 and a few updates, to check the code")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated n")
    parser.add_argument("--updates", type=int, default=UPDATES, help="generator updates of every run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process")
    parser.add_argument("--torchrun", type=int, default=1, metavar="P", help="processes per run (torchrun, gloo)")
    parser.add_argument("--one", nargs=4, metavar=("METHOD", "DATA", "M", "UPDATES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        row = one_run(args.one[0], args.one[1], int(args.one[2]), int(args.one[3]), args.threads)
        if row is not None:
            print(json.dumps(row), flush=True)
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        return
    budget = dict(threads=args.threads, processes=args.torchrun)
    if args.quick:
        budget.update(QUICK)
    else:
        budget.update(sizes=tuple(map(int, args.sizes.split(","))), updates=args.updates)
    rows = run(**budget)
    print(table(rows))
    if not args.quick:
        name = "archive" if args.torchrun == 1 else f"archive_torchrun{args.torchrun}"
        made = (f"`python -m benchmarks.archive {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}, "
                f"{os.cpu_count()} cores, {args.threads} torch thread(s) per process, one run per row.\n\n")
        (HERE / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
        (HERE / f"{name}.md").write_text(made + table(rows))


if __name__ == "__main__":
    main()
