"""Benchmark: the exact SSIM+L1 cost matrix against the matrix-product bound (issue 7, target 1).

For each case the pairwise cost C[i, k] = loss(x_i, y_k) is timed (best of
REPEATS) and compared with
- a lower bound measured in the same process: the flops of the window GEMMs
  that an im2col SSIM needs, 2 n m C P 121 for P = (H-10)(W-10) positions,
  at the rate of a large torch.mm measured right before (best of several);
- the naive per-pair path, loss_per_sample on expanded pairs, timed on a few
  rows against all columns (20 for 28x28, as many pixel pairs for 64x64 RGB)
  and scaled by n / rows; its rows are also the reference for the error column.
Kernel compile time is paid once per machine (the library is cached on disk),
so it is reported apart: "kernel_load_s" is this process's first load,
"compile_s" a cold compile into a fresh directory.

Run: python -m benchmarks.cost_matrix [--gemm]  (--gemm also times the
device-agnostic GEMM path that CPUs without a C compiler fall back to).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neurosql.core import losses, native

TARGET = 2.0  # time / lower bound
REPEATS = 3  # timings per case; the best is kept, as other processes share the two cores
NAIVE_PIXEL_PAIRS = 20 * 2000 * 784  # work of the naive per-pair baseline: 20 rows of the 28x28 case
MM_SIZE = 2048  # side of the square torch.mm that measures the machine's GEMM rate


def matmul_rate(repeats: int = 5) -> float:
    """Flop/s of the best of `repeats` float32 torch.mm of MM_SIZE^2 matrices."""
    a, b = torch.randn(MM_SIZE, MM_SIZE), torch.randn(MM_SIZE, MM_SIZE)
    torch.mm(a, b)  # warm-up: thread pool and packing buffers
    return 2 * MM_SIZE**3 / best_time(lambda: torch.mm(a, b), repeats)


def best_time(fn, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def naive_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """loss_per_sample on every pair (x_i, y_k), one row of x at a time: (len(x), len(y))."""
    return torch.stack([losses.loss_per_sample(xi.expand_as(y), y) for xi in x])


def smooth_images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Uniform noise low-pass filtered, so that SSIM sees structure rather than noise."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


def cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, x, y): 2000 real MNIST digits against 2000 others; 1000 vs 1000 smooth 64x64 RGB images."""
    from neurosql.data import load_data

    digits = load_data("mnist5k", "all", progress=False).images  # (5000, 1, 28, 28), in the file's order
    return [
        ("cost_matrix_28x28", digits[:2000], digits[2000:4000]),
        ("cost_matrix_64x64x3", smooth_images((1000, 3, 64, 64), 0), smooth_images((1000, 3, 64, 64), 1)),
    ]


def kernel_times() -> dict:
    """Seconds to load the cached kernel in this process, and to compile it from scratch."""
    start = time.perf_counter()
    available = native.kernel() is not None
    load = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        native.load(Path(tmp), os.environ.get("CC", "cc"))
        compile_s = time.perf_counter() - start
    return {"kernel": "compiled C" if available else "torch GEMM (no C compiler)", "kernel_load_s": load,
            "compile_s": compile_s}  # fmt: skip


def measure(name: str, x: torch.Tensor, y: torch.Tensor, gemm: bool = False) -> dict:
    n, C, H, W = x.shape
    m = len(y)
    rate = matmul_rate()
    bound = 2 * n * m * C * (H - 10) * (W - 10) * 121 / rate
    cost = losses.pairwise_cost(x, y)
    elapsed = best_time(lambda: losses.pairwise_cost(x, y))
    start = time.perf_counter()
    rows = max(2, NAIVE_PIXEL_PAIRS // (m * C * H * W))
    reference = naive_rows(x[:rows], y)  # (rows, m)
    naive = (time.perf_counter() - start) * n / rows
    row = {
        "name": name, "ratio": elapsed / bound, "target": TARGET, "met": elapsed / bound <= TARGET,
        "time_s": elapsed, "naive_scaled_s": naive, "lower_bound_s": bound, "matmul_gflops": rate / 1e9,
        "max_abs_err": (cost[:rows] - reference).abs().max().item(), "n": n, "m": m, "image": (C, H, W),
    }  # fmt: skip
    if gemm:
        saved = native.kernel
        native.kernel = lambda: None  # the fallback path, as on a machine without a compiler
        try:
            row["gemm_path_s"] = best_time(lambda: losses.pairwise_cost(x, y), 1)
        finally:
            native.kernel = saved
    return row


def run(gemm: bool = False) -> list[dict]:
    """One result per case, for benchmarks/run.py: name, ratio, target, met, and the measurements."""
    extra = kernel_times()
    return [measure(name, x, y, gemm) | extra for name, x, y in cases()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemm", action="store_true", help="also time the GEMM fallback path (slow)")
    rows = run(parser.parse_args().gemm)
    print(f"{'case':<22}{'time s':>9}{'naive s':>10}{'bound s':>9}{'ratio':>7}{'target':>8}{'max err':>10}")
    for r in rows:
        print(
            f"{r['name']:<22}{r['time_s']:>9.2f}{r['naive_scaled_s']:>10.1f}{r['lower_bound_s']:>9.2f}"
            f"{r['ratio']:>7.2f}{r['target']:>8.1f}{r['max_abs_err']:>10.1e}" + ("" if r["met"] else "  NOT MET")
        )
    r = rows[0]
    print(f"matmul rate {r['matmul_gflops']:.0f} GFLOP/s (28x28 case), {r['kernel']}: "
          f"load {r['kernel_load_s']:.2f} s, cold compile {r['compile_s']:.2f} s")  # fmt: skip
    for r in rows:
        if "gemm_path_s" in r:
            print(f"{r['name']}: GEMM fallback path {r['gemm_path_s']:.2f} s")


if __name__ == "__main__":
    main()
