"""The paradigm comparison (paper §3, Tables 1, 3, 4): every method × generator ×
latent dimension × seed trained under one budget, evaluated the same way.

Layout of ``OUT``: ``data/`` (the exact images every run sees), ``runs/<name>/``
(one run each: spec.json, the files of a run directory written by :func:`neurosql.runs.train_run`,
the pipeline ``neurosql train`` uses too — model.pt, log.csv, training.png, samples.png/.npy … —,
train.log and result.json), and the summaries written by
:mod:`neurosql.benchmark_report` (results.csv/json, summary.md, figures).

Each run trains in its own Python process so that its peak memory (the
process's maximum resident set, ``ru_maxrss``) is its own, and so that a crash
costs one run. A run is finished when its ``result.json`` exists: a re-run
skips it, and restarts any other run from an empty directory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .core.assignment import ASSIGNMENTS
from .errors import NeuroSQLError
from .core.generators import GENERATORS, count_parameters, supported_resolutions
from .core.losses import LOSSES
from .core.lattice import LATTICES
from .methods import CONFIGS, METHODS, build_method
from .methods.neurosql import INITS
from .persistence import atomic_write, ensure_writable_dir, write_json
from .engine.config import PRESETS as TRAINING_PRESETS, TrainConfig, add_config_arguments, given_values

DATA_FILE = "data/images.pt"  # inside OUT
SAMPLES_SHOWN = 36  # images per method in the side-by-side grids (Fig. 4)
BUDGET_FIELDS = (  # the TrainConfig fields every run shares
    "epochs", "steps", "batch_size", "lr", "warmup", "ema", "weight_decay", "grad_clip", "restart_epochs", "patience",
    "val_fraction", "device", "augment",
)

# mnist-default on the 2-core CPU, quiet, 2 threads (2,000 training images, batch 16, s per epoch):
# NeuroSQL ~5, VAE ~4, GAN ~6, DDPM ~11-12, so 10 epochs of the 8 runs take ~7 min. Evaluation takes
# ~20–50 s per run except the DDPM's, whose 100-step sampling costs ~5.7 ms per image and step:
# eval_n = 300 keeps it near 3 min a run. Total ≈ 15 min quiet (25–35 min measured beside other jobs).
PRESETS = {
    "mnist-default": dict(
        data="mnist5k", methods="neurosql,vae,gan,ddpm", generators="convnet", latent_dims="2,16",
        seeds="11", limit=2000, eval_n=300, budget={"epochs": 10},
    ),
    # Table 1's MNIST row (= Table 19: d in {2, 3}) under the paper's schedule (App. I: 120 epochs,
    # batch 64, lr 2e-4); hours here
    "paper-mnist": dict(
        data="mnist5k", methods="neurosql,vae,gan,ddpm", generators="convnet", latent_dims="2,3",
        seeds="11", limit=2000, eval_n=2048, budget=TRAINING_PRESETS["paper"],
    ),
}
DEFAULTS = dict(
    data=None, methods=",".join(METHODS), generators="convnet", latent_dims="16",
    seeds="11", limit=None, eval_n=2048,
)


# Hyper-parameters a sweep may try (paper App. D: K in {2, 3, 5}), with the tag each
# puts in a run's name; None keeps the config's default. The lr applies to every
# method, the rest to NeuroSQL only. Among a cell's tries the run with the lowest
# validation loss is selected (App. D: "treated as a hyperparameter").
TUNED = {"assign_every": "K", "momentum": "rho", "lattice": "", "init": "init", "lr": "lr"}


@dataclass(frozen=True)
class RunSpec:
    """One run of the comparison; ``assignment``, ``cost`` and the tuned NeuroSQL
    fields are set for NeuroSQL only, ``lr`` (when swept) for every method."""

    method: str
    generator: str
    latent_dim: int
    seed: int
    assignment: str | None = None
    cost: str | None = None
    assign_every: int | None = None
    momentum: float | None = None
    lattice: str | None = None
    init: str | None = None
    lr: float | None = None

    @property
    def name(self) -> str:
        suffix = "".join(f"-{v}" for v in (self.assignment, self.cost) if v)
        suffix += "".join(f"-{tag}{getattr(self, key)}" for key, tag in TUNED.items() if getattr(self, key) is not None)
        return f"{self.method}-{self.generator}-d{self.latent_dim}-s{self.seed}{suffix}"

    @property
    def cell(self) -> str:
        """The name without the tuned hyper-parameters: runs of one cell compete in the selection."""
        return RunSpec(self.method, self.generator, self.latent_dim, self.seed, self.assignment, self.cost).name

    def config(self, budget: dict) -> dict:
        """The method's config fields: the shared budget (the fields this method has) plus this run's choices."""
        own = CONFIGS[self.method].__dataclass_fields__
        params = dict({k: v for k, v in budget.items() if k in own}, generator=self.generator, latent_dim=self.latent_dim, seed=self.seed, progress=False)
        if self.method == "neurosql":
            params.update(assignment=self.assignment, cost=self.cost)
        params.update({key: getattr(self, key) for key in TUNED if getattr(self, key) is not None})
        return params


def _items(value) -> list[str]:
    """A comma-separated string or a sequence, as a list of non-empty strings."""
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [p.strip() for p in parts if p.strip()]


def _names(value, valid, what: str) -> list[str]:
    items = _items(value)
    if not items:
        raise NeuroSQLError(f"--{what} is empty; give a comma-separated list from {', '.join(valid)}")
    unknown = [s for s in items if s not in valid]
    if unknown:
        raise NeuroSQLError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(valid)}")
    return list(dict.fromkeys(items))


def _integers(value, what: str, low: int) -> list[int]:
    try:
        values = [int(s) for s in _items(value)]
    except ValueError:
        raise NeuroSQLError(f"--{what} must be comma-separated integers, got '{value}'") from None
    if not values or min(values) < low:
        raise NeuroSQLError(f"--{what} needs integers >= {low}, got '{value}'")
    return list(dict.fromkeys(values))


def _floats(value, what: str, low: float, high: float = float("inf")) -> list[float]:
    try:
        values = [float(s) for s in _items(value)]
    except ValueError:
        raise NeuroSQLError(f"--{what} must be comma-separated numbers, got '{value}'") from None
    if not values or not all(low < v <= high for v in values):
        raise NeuroSQLError(f"--{what} needs numbers in ({low:g}, {high:g}], got '{value}'")
    return list(dict.fromkeys(values))


def plan_runs(methods, generators, latent_dims, seeds, assignments=("exact",), costs=("ssim_l1",),
              tuned: dict | None = None) -> list[RunSpec]:
    """Every combination; the assignment and cost ablations and the tuned NeuroSQL fields
    multiply NeuroSQL runs only, a swept lr multiplies every method.

    tuned: field of ``TUNED`` -> list of values to try (absent: the config default).
    """
    tuned = tuned or {}
    lrs = tuned.get("lr", [None])
    neurosql_tries = list(itertools.product(*(tuned.get(key, [None]) for key in TUNED if key != "lr")))
    runs = []
    for generator in generators:
        for d in latent_dims:
            for seed in seeds:
                for method in methods:
                    variants = [(a, c) for a in assignments for c in costs] if method == "neurosql" else [(None, None)]
                    tries = neurosql_tries if method == "neurosql" else [(None,) * len(neurosql_tries[0])]
                    runs += [RunSpec(method, generator, d, seed, a, c, *t, lr) for a, c in variants for t in tries for lr in lrs]
    return runs


# ------------------------------------------------------------------ one run
def _evaluate(model, data: dict, spec: dict) -> dict:
    from .evaluation import evaluate_model

    labels = {k: None if data[k] is None else data[k].numpy() for k in ("train_labels", "test_labels")}
    return evaluate_model(
        model, data["test_images"], real_train=data["train_images"], n=spec["eval_n"], seed=spec["seed"],
        downstream=spec["downstream"] and all(v is not None for v in labels.values()), **labels,
    )


def execute_run(run_dir: str | Path) -> dict:
    """Train, save and evaluate the run described by ``run_dir/spec.json``; write result.json last."""
    from .runs import environment_info, peak_rss_mb, train_run

    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "spec.json").read_text())
    data = torch.load(run_dir.parent.parent / DATA_FILE, weights_only=True)  # run_dir is OUT/runs/<name>
    model = build_method(spec["method"], **spec["config"])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cost = train_run(model, data["train_images"], data.get("val_images"), run_dir, checkpoint=False,
                     n_samples=SAMPLES_SHOWN)
    wall, cuda = cost["wall_time_s"], model.device_.type == "cuda"
    metrics = _evaluate(model, data, spec)
    rows = model.log_.rows
    core = model.networks_[model.compared_network]
    result = {
        "name": run_dir.name,
        **{k: spec[k] for k in ("method", "generator", "latent_dim", "seed", "assignment", "cost", "cell", *TUNED)},
        "n_parameters": model.n_parameters,
        "generator_parameters": count_parameters(core),
        "n_train": len(model.train_index_),
        "epochs_run": model.epochs_run_,
        "updates": model.updates_,
        "wall_time_s": wall,
        "mean_epoch_s": wall / max(model.epochs_run_, 1),
        "generator_s_per_epoch": float(np.mean([r["time_generator"] for r in rows])),
        "peak_rss_train_mb": cost["peak_rss_train_mb"],
        "peak_rss_mb": peak_rss_mb(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "final_train_loss": rows[-1]["train_loss"],
        "best_val_loss": min((r["val_loss"] for r in rows if "val_loss" in r), default=None),
        **{f"ddpm_{k}": v for k, v in getattr(model, "param_match_", {}).items() if k != "generator"},
        **metrics,
        "spec": spec,
        "environment": environment_info(model.device_),
    }
    write_json(run_dir / "result.json", result)
    return result


# ------------------------------------------------------------- the sweep
def _load_images(data: str | None, limit, resolution, channels, seed: int, val_fraction: float, progress: bool):
    """Training, early-stopping (the data set's val split, None: held out of train) and test images."""
    from .data import load_data, load_validation

    train = load_data(data, "train", resolution=resolution, channels=channels, limit=limit, seed=seed, progress=progress)
    shape = dict(resolution=train.images.shape[-1], channels=train.images.shape[1])
    val = load_validation(train.source, len(train), val_fraction, **shape, seed=seed, progress=progress)
    test = load_data(data, "test", **shape, progress=progress)
    return train, val, test


def _check_generators(generators, resolution: int) -> None:
    for name in generators:
        if resolution not in supported_resolutions(name):
            raise NeuroSQLError(f"generator {name} cannot make {resolution}x{resolution} images; pass another --resolution")


def _finished(run_dir: Path, spec: dict) -> dict | None:
    """The stored result when the run finished with this very spec; None when it must (re)run."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("spec") != spec:
        raise NeuroSQLError(
            f"{run_dir} holds a result for other settings (budget, data or evaluation changed); "
            "use another --out or delete that run directory"
        )
    return result


def _launch(run_dir: Path, spec: dict) -> dict | None:
    """Run one spec in a fresh process from an empty directory; its result, or None when it failed."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a crashed attempt: start clean
    run_dir.mkdir(parents=True)
    write_json(run_dir / "spec.json", spec)
    # Spinning OpenMP workers slow torch several-fold when other jobs share the cores (measured ~4x
    # on a busy 2-core machine); passive waiting costs little when the machine is idle.
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    with open(run_dir / "train.log", "wb") as log:
        command = [sys.executable, "-m", "neurosql.benchmark", str(run_dir)]
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        return None
    return json.loads((run_dir / "result.json").read_text())


def run_benchmark(
    out: str | Path,
    *,
    data: str | None = None,
    methods=tuple(METHODS),
    generators=("convnet",),
    latent_dims=(16,),
    seeds=(11,),
    assignments=("exact",),
    costs=("ssim_l1",),
    assign_every=None,
    momentum=None,
    lattices=None,
    inits=None,
    lrs=None,
    budget: dict | None = None,
    limit: int | None = None,
    resolution: int | None = None,
    channels: int | None = None,
    eval_n: int = 2048,
    downstream: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train and evaluate every planned run under one budget, then write the summaries.

    budget: TrainConfig fields shared by every run (epochs, batch_size, lr,
    weight_decay, grad_clip, restart_epochs, patience, val_fraction, device).
    assign_every, momentum, lattices, inits (NeuroSQL) and lrs (every method):
    values to try (None: the default); each cell keeps the try with the lowest
    validation loss in the summary tables (``selected`` in results).
    The training images are the same for every run (``limit`` drawn with the
    first seed). Returns one result dict per finished run; raises
    NeuroSQLError naming the failed runs (their train.log) after summarising the rest.
    """
    from .benchmark_report import write_summary

    budget = _checked_budget(budget)
    methods, generators = _names(methods, METHODS, "methods"), _names(generators, GENERATORS, "generators")
    assignments, costs = _names(assignments, ASSIGNMENTS, "assignments"), _names(costs, LOSSES, "costs")
    latent_dims, seeds = _integers(latent_dims, "latent-dims", 1), _integers(seeds, "seeds", 0)
    tuned = _tuned(assign_every, momentum, lattices, inits, lrs)
    if eval_n < 2 or (limit is not None and limit < 2):
        raise NeuroSQLError(f"--eval-n and --limit must be >= 2, got {eval_n} and {limit}")
    out = ensure_writable_dir(out)
    val_fraction = budget.get("val_fraction", TrainConfig.val_fraction)
    train, val, test = _load_images(data, limit, resolution, channels, seeds[0], val_fraction, progress)
    _check_generators(generators, train.images.shape[-1])
    shared = {"data": _write_data(out, train, val, test, limit, seeds[0]), "eval_n": eval_n, "downstream": downstream}
    runs = plan_runs(methods, generators, latent_dims, seeds, assignments, costs, tuned)
    for run in runs:  # a bad value fails here, before any training
        CONFIGS[run.method](**run.config(budget)).validate()
    specs = {run.name: {**asdict(run), "cell": run.cell, "config": run.config(budget), **shared} for run in runs}
    results = {name: _finished(out / "runs" / name, spec) for name, spec in specs.items()}  # checks every spec first
    failed = _launch_pending(out, specs, results, progress)
    done = [result for result in results.values() if result is not None]
    write_summary(out, done)
    if failed:
        raise NeuroSQLError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their train.log, then re-run to retry")
    return done


def _checked_budget(budget: dict | None) -> dict:
    """The shared budget, as a dict of TrainConfig fields that validate."""
    budget = dict(budget or {})
    unknown = sorted(set(budget) - set(BUDGET_FIELDS))
    if unknown:
        raise NeuroSQLError(f"not budget fields: {', '.join(unknown)}; the budget has {', '.join(BUDGET_FIELDS)}")
    TrainConfig(**budget).validate()
    return budget


def _tuned(assign_every, momentum, lattices, inits, lrs) -> dict:
    """The values to try of each tuned hyper-parameter given (None: not tuned), checked."""
    return {key: parse(value) for key, value, parse in (
        ("assign_every", assign_every, lambda v: _integers(v, "assign-every", 1)),
        ("momentum", momentum, lambda v: _floats(v, "momentum", 0.0, 1.0)),
        ("lattice", lattices, lambda v: _names(v, LATTICES, "lattices")),
        ("init", inits, lambda v: _names(v, INITS, "inits")),
        ("lr", lrs, lambda v: _floats(v, "lrs", 0.0)),
    ) if value is not None}


def _launch_pending(out: Path, specs: dict, results: dict, progress: bool) -> list[str]:
    """Train the runs without a result (filling ``results``) under one progress bar; the names that failed."""
    from tqdm.auto import tqdm

    pending = [name for name, result in results.items() if result is None]
    failed = []
    bar = tqdm(total=len(specs), initial=len(specs) - len(pending), desc="benchmark", unit="run", disable=not progress)
    for name in pending:  # the ETA counts only runs trained in this session
        bar.set_postfix_str(name)
        results[name] = _launch(out / "runs" / name, specs[name])
        if results[name] is None:
            failed.append(name)
            tqdm.write(f"run {name} failed; see {out / 'runs' / name / 'train.log'}")
        bar.update(1)
    bar.close()
    return failed


def _write_data(out: Path, train, val, test, limit, seed: int) -> dict:
    """OUT/data/images.pt: the exact images (and labels) every run sees; returns their description."""
    (out / "data").mkdir(exist_ok=True)
    labels = lambda d: None if d.labels is None else torch.as_tensor(d.labels)  # tensors load with weights_only
    tensors = {"train_images": train.images, "val_images": None if val is None else val.images,
               "test_images": test.images, "train_labels": labels(train), "test_labels": labels(test)}
    atomic_write(out / DATA_FILE, lambda f: torch.save(tensors, f))
    return {"spec": train.source, "limit": limit, "n_train": len(train), "n_val": 0 if val is None else len(val),
            "n_test": len(test), "shape": list(train.images.shape[1:]), "data_seed": seed}


# ------------------------------------------------------------------- CLI
def add_benchmark_parser(subparsers) -> argparse.ArgumentParser:
    """The ``neurosql benchmark`` sub-command (the CLI wires it; nothing here is needed by the API)."""
    p = subparsers.add_parser("benchmark", help="train and compare NeuroSQL, VAE, GAN and DDPM under one budget")
    p.add_argument("--out", required=True, help="benchmark folder; re-running it skips finished runs")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="mnist-default: embedded MNIST (2,000 images), all methods, ConvNet, d in {2, 16}, "
                        "10 epochs, eval-n 300: about 15 min on 2 CPU cores; paper-mnist: Table 1's MNIST row, d in {2, 3}, "
                        "under the paper's schedule (120 epochs, batch 64, lr 2e-4, no warm-up or weight average, patience 25), "
                        "eval-n 2048: hours")
    p.add_argument("--data", default=None, help="data spec as for 'neurosql train' (default: mnist5k)")
    p.add_argument("--resolution", type=int, default=None, help="square image side (default: the layout's)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 gray or 3 RGB (default: the layout's)")
    p.add_argument("--limit", type=int, default=None, help="cap on training images, seeded stratified (paper: ~2000)")
    lists = (
        ("--methods", f"from {', '.join(METHODS)} (default: all)"),
        ("--generators", f"from {', '.join(GENERATORS)} (default: convnet)"),
        ("--latent-dims", "latent dimensions, e.g. 2,4,8,16,32,64,128 (default: 16)"),
        ("--seeds", "seeds (default: 11, as in the paper)"),
    )
    for flag, help_text in lists:
        p.add_argument(flag, default=None, help="comma-separated " + help_text)
    p.add_argument("--assignments", default="exact", help=f"NeuroSQL solvers to compare, from {', '.join(ASSIGNMENTS)}")
    p.add_argument("--costs", default="ssim_l1", help=f"NeuroSQL assignment costs to compare, from {', '.join(LOSSES)}")
    tries = (  # hyper-parameters to select by validation loss (paper App. D: K in {2, 3, 5})
        ("--assign-every", "NeuroSQL K values, e.g. 2,3,5"),
        ("--momentum", "NeuroSQL momentum ρ values in (0, 1], e.g. 0.5,0.7,0.9"),
        ("--lattices", f"NeuroSQL lattices, from {', '.join(LATTICES)}"),
        ("--inits", f"NeuroSQL initial assignments, from {', '.join(INITS)}"),
        ("--lrs", "learning rates for every method, e.g. 1e-4,2e-4,3e-4"),
    )
    for flag, help_text in tries:
        p.add_argument(flag, default=None, help=f"comma-separated {help_text}; each (method, generator, d, seed, "
                                                "solver, cost) keeps the try with the lowest validation loss (default: none)")
    p.add_argument("--eval-n", type=int, default=None,
                   help="real and generated images per feature metric (default: 2048, capped by the test set)")
    p.add_argument("--downstream", action=argparse.BooleanOptionalAction, default=False,
                   help="also train the downstream classifier on generated images (methods with codes; default: off)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="overall progress bar with ETA")
    add_config_arguments(p, TrainConfig, only=BUDGET_FIELDS)  # the shared budget, with TrainConfig's defaults and help
    return p


def _resolved(args: argparse.Namespace) -> dict:
    """Explicit flags first, then the preset's values, then the defaults."""
    preset = PRESETS.get(args.preset, {})
    return {key: getattr(args, key) if getattr(args, key) is not None else preset.get(key, default)
            for key, default in DEFAULTS.items()}


def _resolved_budget(args: argparse.Namespace) -> dict:
    """The budget flags given, over the preset's budget (whose epochs a given --steps replaces)."""
    given = given_values(args, TrainConfig, only=BUDGET_FIELDS)
    preset = PRESETS.get(args.preset, {}).get("budget", {})
    if "steps" in given:
        preset = {k: v for k, v in preset.items() if k != "epochs"}
    return {**preset, **given}


def cmd_benchmark(args: argparse.Namespace) -> None:
    options = _resolved(args)
    budget = _resolved_budget(args)
    start = time.perf_counter()
    results = run_benchmark(
        args.out, **options, assignments=args.assignments, costs=args.costs, assign_every=args.assign_every,
        momentum=args.momentum, lattices=args.lattices, inits=args.inits, lrs=args.lrs, budget=budget,
        resolution=args.resolution, channels=args.channels, downstream=args.downstream, progress=args.progress,
    )
    print(f"{len(results)} runs summarised in {Path(args.out) / 'summary.md'} ({time.perf_counter() - start:.0f} s)")


def _child(argv: list[str]) -> int:
    """Entry of a run's own process: ``python -m neurosql.benchmark RUN_DIR``."""
    try:
        execute_run(argv[0])
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
