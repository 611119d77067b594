"""Every performance target of issue 7 in one run: ``make bench`` (about 20–30 minutes here).

Writes ``benchmarks/results.json`` (a ``targets`` list of {name, ratio, target,
met} plus details, the machine and versions) and ``benchmarks/results.md``.
Ratios are measured within one run, so they compare like with like on this machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from neurosql.runs import environment_info

from . import assignment, cost_matrix, epoch_time, time_to_quality

HERE = Path(__file__).resolve().parent
SUITES = (cost_matrix, assignment, epoch_time, time_to_quality)


def main() -> None:
    torch.set_num_threads(2)
    start = time.perf_counter()
    targets = []
    for suite in SUITES:
        print(f"== {suite.__name__}", flush=True)
        targets += suite.run()
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
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
