"""Every performance target of issues 7 and 25 in one run: ``make bench``.

Writes ``benchmarks/results.json`` (a ``targets`` list of {name, ratio, target,
met} plus details, the machine and versions) and ``benchmarks/results.md``.
Ratios are measured within one run, so they compare like with like on this machine.

    python -m benchmarks.run [--quick]

``--quick`` runs every suite on a few images (a CI-sized check of the benchmark
code, a minute or two) and writes nothing: its ratios measure nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neurosql.runs import environment_info

from . import assignment, cost_matrix, epoch_time, time_to_quality

HERE = Path(__file__).resolve().parent
SUITES = (cost_matrix, assignment, epoch_time, time_to_quality)
KEPT = {  # tables too long for make bench, made by their own command (first line of each), carried into results.md
    "archive.md": "Archive scale: Algorithm 2 (m = 256) and the VAE at n up to 10⁵",
    "archive_torchrun2.md": "Archive scale: one process against two (torchrun, gloo), one after the other",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few images per suite, to check the code; writes nothing")
    quick = parser.parse_args(argv).quick
    torch.set_num_threads(2)
    start = time.perf_counter()
    targets = []
    for suite in SUITES:
        print(f"== {suite.__name__}", flush=True)
        targets += suite.run(quick=quick)
    if quick:
        for t in targets:
            print(f"{t['name']}: ratio {t['ratio']:.3f} (target {t['target']}; quick run, not a measurement)")
        print(f"quick run: {time.perf_counter() - start:.0f} s")
        return
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": time.perf_counter() - start,
        "environment": environment_info("cpu"),
        "targets": targets,
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    lines = [
        f"Measured {result['created']} on {result['environment']['processor']}, "
        f"{result['environment']['cpu_count']} cores, torch {result['environment']['torch']}.",
        "",
        "| target | ratio | goal | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t['name']} | {t['ratio']:.3f} | ≤ {t['target']} | {'yes' if t['met'] else 'no'} |" for t in targets]
    lines += [part for name, title in KEPT.items() if (HERE / name).exists()
              for part in ("", f"## {title}", "", (HERE / name).read_text().rstrip())]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
