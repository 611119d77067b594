"""Where Algorithm 1 stops being practical: one full-batch assignment round against n.

For each n, a fresh process fits NeuroSQL with Algorithm 1 (the defaults, latent
dimension 16, random π₀, no validation) on n seeded shifts of the embedded digits
at 28 px for 4 epochs with K = 3, so that epoch 3 ends in one round: G(Q) of the
n lattice points, the n × n cost and the exact solve (cold: the first round has
no previous prices). It reports the round's parts, the generator epoch beside
it and the process's peak RSS (the n × n float32 cost and the solver's float64
copy are 12 n² bytes). The automatic --assign-batch threshold is read from this
table (``neurosql.methods.auto_batch.N_AUTO``).

    OMP_NUM_THREADS=1 python -m benchmarks.alg1_round [--sizes 2000,5000,10000]   # writes benchmarks/alg1_round.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = (2_000, 5_000, 10_000)


def one_run(data: str) -> dict:
    """Fit 4 epochs of Algorithm 1 in this process (one thread); the round of epoch 3 and peak RSS."""
    import numpy as np
    import torch

    from neurosql import NeuroSQL

    torch.set_num_threads(1)
    X = torch.from_numpy(np.load(data).astype(np.float32) / 255.0)  # (n, 1, 28, 28)
    model = NeuroSQL(latent_dim=16, epochs=4, assign_every=3, assign_batch=0, init="random", val_fraction=0.0,
                     progress=False, seed=0).fit(X)
    row = next(r for r in model.log_.rows if "time_cost" in r)
    return {"n": len(X), "generator_epoch_s": row["time_generator"], "cost_s": row["time_cost"],
            "solve_s": row["time_assign"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def table(rows: list[dict]) -> str:
    lines = ["| n | G(Q) + n×n cost (s) | exact solve, cold (s) | round / generator epoch | 12 n² bytes (MB) | "
             "peak RSS (MB) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['cost_s']:.1f} | {r['solve_s']:.1f} | "
              f"{(r['cost_s'] + r['solve_s']) / r['generator_epoch_s']:.1f} | {12 * r['n'] ** 2 / 2**20:.0f} | "
              f"{r['peak_rss_mb']:.0f} |" for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated n")
    parser.add_argument("--one", metavar="DATA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one)))
        return
    from benchmarks.archive import shifted_digits

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in map(int, args.sizes.split(",")):
            data = shifted_digits(n, Path(tmp) / f"x{n}.npy")
            out = subprocess.run([sys.executable, "-m", "benchmarks.alg1_round", "--one", str(data)],
                                 check=True, capture_output=True, text=True, cwd=HERE.parent)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    note = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, 1 torch thread, "
            "one run per n (`python -m benchmarks.alg1_round`).\n\n")
    print(table(rows))
    (HERE / "alg1_round.md").write_text(note + table(rows))


if __name__ == "__main__":
    main()
