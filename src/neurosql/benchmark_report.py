"""Summaries of a benchmark: one row per run (CSV, JSON), paper-style tables
(Tables 1, 5–19: per latent dimension, then mean ± std over dimensions, best
in bold), side-by-side sample grids (Fig. 4) and each metric against d.

When a sweep tries several hyper-parameter values (K, ρ, lattice, init, lr),
the runs of one cell (same method, generator, d, seed, solver and cost) compete
and the one with the lowest best validation loss is selected (paper App. D:
K "treated as a hyperparameter"); tables, plots and grids show selected runs,
and a selection table lists every try.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from .persistence import write_json, write_text
from .report import make_grid, save_figure, subplots

# (result key, column title, True when higher is better)
METRICS = (
    ("pfid", "pFID ↓", False),
    ("kid", "KID ↓", False),
    ("precision", "precision ↑", True),
    ("recall", "recall ↑", True),
    ("ssim", "SSIM ↑", True),
    ("lpips", "LPIPS ↓", False),
    ("nn1_accuracy_vgg", "1-NN-VGG → 0.5", False),
    ("fd_vgg", "FD-VGG ↓", False),
    ("kid_vgg", "KID-VGG ↓", False),
    ("precision_vgg", "precision-VGG ↑", True),
    ("recall_vgg", "recall-VGG ↑", True),
    ("recon_ssim", "recon SSIM ↑", True),
    ("downstream_accuracy", "downstream acc. ↑", True),
)
RESOURCES = (
    ("n_parameters", "params"),
    ("updates", "updates"),
    ("mean_epoch_s", "s / epoch"),
    ("peak_rss_train_mb", "peak RAM MB"),
)
NESTED = ("spec", "environment")  # kept in results.json, left out of the flat CSV


def label(result: dict) -> str:
    """The column name of a run's method: NeuroSQL ablations name their non-default solver and cost."""
    if result["method"] != "neurosql":
        return result["method"]
    extras = [v for v, default in ((result.get("assignment"), "exact"), (result.get("cost"), "ssim_l1")) if v and v != default]
    return "-".join(["neurosql", *extras])


def _values(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None]


def _cell(values: list[float], bold: bool = False) -> str:
    if not values:
        return "—"
    mean = np.mean(values)
    text = f"{mean:,.0f}" if all(float(v).is_integer() for v in values) and abs(mean) >= 1000 else f"{mean:.4g}"
    text += f" ± {np.std(values, ddof=1):.2g}" if len(values) > 1 else ""
    return f"**{text}**" if bold else text


def _best(groups: dict[str, list[dict]], key: str, higher: bool) -> set[str]:
    """The groups whose mean is the best (all of them on a tie); none when fewer than two differ."""
    means = {name: float(np.mean(v)) for name, rows in groups.items() if (v := _values(rows, key))}
    if len(set(means.values())) < 2:
        return set()
    best = (max if higher else min)(means.values())
    return {name for name, m in means.items() if m == best}


def _header(metrics, lead: str | None = None) -> list[str]:
    head = ([lead] if lead else []) + ["method"] + [t for _, t, _ in metrics] + [t for _, t in RESOURCES]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def _rows(groups: dict[str, list[dict]], metrics, lead: str | None = None) -> list[str]:
    """One markdown row per group (method label): metric cells with the best in bold, then resources."""
    best = {key: _best(groups, key, higher) for key, _, higher in metrics}
    lines = []
    for name, rows in groups.items():
        cells = [_cell(_values(rows, key), name in best[key]) for key, _, _ in metrics]
        cells += [_cell(_values(rows, key)) for key, _ in RESOURCES]
        lines.append("| " + " | ".join(([lead] if lead else []) + [name] + cells) + " |")
    return lines


def _by(results: list[dict], key) -> dict:
    groups: dict = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    return groups


def select(results: list[dict]) -> list[dict]:
    """Mark each run ``selected``: in its cell, the lowest ``best_val_loss`` wins (first on a tie;
    a run without validation loss loses to any with one). Returns the selected runs, in order."""
    winners = set()
    for runs in _by(results, lambda r: r.get("cell", r["name"])).values():
        best = min(runs, key=lambda r: r["best_val_loss"] if r.get("best_val_loss") is not None else float("inf"))
        winners.add(best["name"])
    for r in results:
        r["selected"] = r["name"] in winners
    return [r for r in results if r["selected"]]


def _selection_lines(results: list[dict]) -> list[str]:
    """Every try of the cells that had several, with its validation loss; the selected one in bold."""
    cells = {cell: runs for cell, runs in _by(results, lambda r: r.get("cell", r["name"])).items() if len(runs) > 1}
    if not cells:
        return []
    lines = ["## Hyper-parameter selection (lowest validation loss)", "",
             "| cell | run | best val loss | selected |", "|---|---|---|---|"]
    for cell, runs in cells.items():
        for r in runs:
            loss = "—" if r.get("best_val_loss") is None else f"{r['best_val_loss']:.4g}"
            lines.append(f"| {cell} | {r['name']} | {f'**{loss}**' if r['selected'] else loss} | {'✓' if r['selected'] else ''} |")
    return lines + [""]


def write_tables(path: Path, results: list[dict]) -> Path:
    """summary.md: per generator, a table per latent dimension and one averaged over dimensions
    (selected runs only), then the selection table when hyper-parameters were swept."""
    tried, results = results, select(results)
    metrics = [m for m in METRICS if _values(results, m[0])]
    lines = ["# Benchmark summary", "",
             f"{len(results)} runs{f' (selected from {len(tried)} tries)' if len(tried) > len(results) else ''}. "
             "Cells: mean over seeds (± sample std when several); "
             "best method in bold. Resources: trainable parameters of every trained network, generator updates, "
             "wall seconds per epoch, peak resident memory during training.", ""]
    for generator, runs in _by(results, lambda r: r["generator"]).items():
        lines += [f"## {generator}", "", "### Per latent dimension", ""] + _header(metrics, "d")
        for d, at_d in sorted(_by(runs, lambda r: r["latent_dim"]).items()):
            lines += _rows(_by(at_d, label), metrics, str(d))
        lines += ["", "### Mean ± std over latent dimensions and seeds", ""]
        lines += _header(metrics) + _rows(_by(runs, label), metrics) + [""]
    if len({r["generator"] for r in results}) > 1:
        lines += ["## All generators (as in Table 1)", ""] + _header(metrics) + _rows(_by(results, label), metrics) + [""]
    lines += _selection_lines(tried)
    return write_text(path, "\n".join(lines) + "\n")


def write_rows(out: Path, results: list[dict]) -> None:
    """results.json (everything) and results.csv (the flat fields), one row per run."""
    write_json(out / "results.json", results)
    columns: list[str] = []
    for r in results:
        columns += [k for k in r if k not in columns and k not in NESTED]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results)
    write_text(out / "results.csv", buffer.getvalue())


def plot_metrics(out: Path, results: list[dict]) -> list[Path]:
    """metric_<key>.png: the metric against the latent dimension, a panel per generator, a line per method."""
    paths = []
    generators = sorted({r["generator"] for r in results})
    for key, title, _ in METRICS:
        if not _values(results, key):
            continue
        fig, axes = subplots(1, len(generators), figsize=(4.5 * len(generators), 3.5), squeeze=False)
        for ax, generator in zip(axes[0], generators):
            for name, runs in _by([r for r in results if r["generator"] == generator], label).items():
                dims = sorted({r["latent_dim"] for r in runs if r.get(key) is not None})
                stats = [_values([r for r in runs if r["latent_dim"] == d], key) for d in dims]
                ax.errorbar(dims, [np.mean(s) for s in stats], yerr=[np.std(s) for s in stats], marker="o", capsize=3, label=name)
            ax.set_xscale("log", base=2)
            ax.set(xlabel="latent dimension d", ylabel=title, title=generator)
            ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / f"metric_{key}.png"))
    return paths


def sample_grids(out: Path, results: list[dict]) -> list[Path]:
    """samples_<generator>_d<d>.png: the first seed's samples of every method side by side (Fig. 4)."""
    paths = []
    for (generator, d), runs in sorted(_by(results, lambda r: (r["generator"], r["latent_dim"])).items()):
        first_seed = min(r["seed"] for r in runs)
        panels = [(label(r), out / "runs" / r["name"] / "samples.npy") for r in runs if r["seed"] == first_seed]
        panels = [(name, np.load(p)) for name, p in panels if p.is_file()]
        if not panels:
            continue
        fig, axes = subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
        for ax, (name, images) in zip(axes[0], panels):
            grid = make_grid(torch.from_numpy(images), nrow=6)
            ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
            ax.set_title(name)
            ax.axis("off")
        fig.suptitle(f"{generator}, d = {d}, seed {first_seed}")
        paths.append(save_figure(fig, out / f"samples_{generator}_d{d}.png"))
    return paths


def write_summary(out: str | Path, results: list[dict]) -> None:
    """Every summary file of a benchmark folder from its run results (tables keep the results' order)."""
    out = Path(out)
    selected = select(results)
    write_rows(out, results)
    if not results:
        return
    write_tables(out / "summary.md", results)
    plot_metrics(out, selected)
    sample_grids(out, selected)
