"""The paradigm-comparison benchmark: planning, bad input, a tiny real sweep,
resuming, and the summary tables."""

import argparse
import csv
import json

import pytest
import torch

from neurosql import NeuroSQL, NeuroSQLError
from neurosql.methods import VAE
from neurosql.benchmark import _resolved, _resolved_budget, add_benchmark_parser, plan_runs, run_benchmark
from neurosql.benchmark_report import select, write_tables
from neurosql.metrics import stlpips_available
from neurosql.methods import load_model

TINY = dict(
    methods=["neurosql", "vae"], generators=["convnet"], latent_dims=[2], seeds=[3],
    budget=dict(epochs=1, batch_size=16), limit=24, eval_n=16, progress=False,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, run_benchmark(out, **TINY)


def test_plan_multiplies_only_neurosql_by_the_ablations():
    runs = plan_runs(["neurosql", "gan"], ["convnet", "unet"], [2, 8], [1], ["exact", "greedy"], ["ssim_l1", "l2"])
    assert len(runs) == 2 * 2 * (4 + 1)
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    assert "neurosql-unet-d8-s1-greedy-l2" in names and "gan-convnet-d2-s1" in names


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(methods=["neurosql", "flow"]), "unknown methods flow"),
        (dict(generators=["mlp"]), "unknown generators mlp"),
        (dict(latent_dims="2,x"), "latent-dims must be comma-separated integers"),
        (dict(latent_dims=[0]), "latent-dims needs integers >= 1"),
        (dict(methods=""), "methods is empty"),
        (dict(assignments=["hungarian"]), "unknown assignments"),
        (dict(budget=dict(momentum=0.5)), "not budget fields: momentum"),
        (dict(budget=dict(epochs=0)), "epochs must be >= 1"),
        (dict(eval_n=1), "eval-n"),
    ],
)
def test_bad_input_raises_before_any_work(tmp_path, change, message):
    with pytest.raises(NeuroSQLError, match=message):
        run_benchmark(tmp_path / "out", **{**TINY, **change})
    assert not (tmp_path / "out").exists()


def test_unwritable_out_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NeuroSQLError, match="cannot write to output directory"):
        run_benchmark(blocker / "out", **TINY)


def test_sweep_writes_every_result_file(bench):
    out, results = bench
    assert [r["name"] for r in results] == ["neurosql-convnet-d2-s3-exact-ssim_l1", "vae-convnet-d2-s3"]
    for name in ("results.json", "results.csv", "summary.md", "samples_convnet_d2.png", "metric_pfid.png", "metric_ssim.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == ["neurosql", "vae"]
    assert len(json.loads((out / "results.json").read_text())) == 2
    summary = (out / "summary.md").read_text()
    assert "| 2 | neurosql |" in summary and "| vae |" in summary and "**" in summary
    assert ("FD-VGG ↓" in summary) == stlpips_available()[0]  # pretrained-feature columns when installed
    for r in results:
        # 24 images in batches of 16 and 8, one epoch → the same 2 generator updates
        assert r["updates"] == 2 and r["n_train"] == 24  # --limit: training images; val from the val split
        assert r["n_parameters"] > 0 and r["peak_rss_mb"] > 0 and r["mean_epoch_s"] > 0
        assert r["pfid"] is not None and r["recon_ssim"] is not None
        assert (out / "runs" / r["name"] / "model.pt").is_file()


def test_plan_tries_neurosql_fields_on_neurosql_and_lr_on_every_method():
    tuned = {"assign_every": [2, 3, 5], "momentum": [0.5, 0.7], "lr": [1e-4, 3e-4]}
    runs = plan_runs(["neurosql", "vae"], ["convnet"], [16], [11], tuned=tuned)
    assert len(runs) == 3 * 2 * 2 + 2
    assert {(r.assign_every, r.momentum) for r in runs if r.method == "vae"} == {(None, None)}
    run = next(r for r in runs if r.method == "neurosql" and r.assign_every == 5 and r.momentum == 0.5 and r.lr == 3e-4)
    assert run.name == "neurosql-convnet-d16-s11-exact-ssim_l1-K5-rho0.5-lr0.0003"
    assert run.cell == "neurosql-convnet-d16-s11-exact-ssim_l1"
    assert {"assign_every": 5, "momentum": 0.5, "lr": 3e-4}.items() <= run.config({"epochs": 1}).items()


def test_selection_keeps_the_lowest_validation_loss_per_cell():
    def row(name, cell, loss):
        return dict(name=name, cell=cell, best_val_loss=loss)

    results = [row("a-K2", "a", 0.3), row("a-K3", "a", 0.2), row("a-K5", "a", None), row("b", "b", None),
               row("c-lr1", "c", 0.5), row("c-lr2", "c", 0.5)]
    assert [r["name"] for r in select(results)] == ["a-K3", "b", "c-lr1"]
    assert [r["selected"] for r in results] == [False, True, False, True, True, False]


def test_a_swept_hyper_parameter_is_selected_by_validation_loss(tmp_path):
    out = tmp_path / "sweep"
    results = run_benchmark(out, **{**TINY, "methods": ["neurosql"], "assign_every": "1,2"})
    assert [r["name"] for r in results] == ["neurosql-convnet-d2-s3-exact-ssim_l1-K1", "neurosql-convnet-d2-s3-exact-ssim_l1-K2"]
    assert [r["spec"]["config"]["assign_every"] for r in results] == [1, 2]
    losses = [r["best_val_loss"] for r in results]
    assert None not in losses and [r["selected"] for r in results] == [losses[0] <= losses[1], losses[0] > losses[1]]
    summary = (out / "summary.md").read_text()
    winner = results[0] if results[0]["selected"] else results[1]
    assert "1 runs (selected from 2 tries)" in summary and "Hyper-parameter selection" in summary
    assert f"| {winner['name']} | **{winner['best_val_loss']:.4g}** | ✓ |" in summary
    with pytest.raises(NeuroSQLError, match="momentum needs numbers in"):
        run_benchmark(tmp_path / "bad", **{**TINY, "momentum": "0.7,1.5"})


def test_run_directories_load_with_the_right_class(bench):
    out, _ = bench
    assert isinstance(load_model(out / "runs" / "neurosql-convnet-d2-s3-exact-ssim_l1"), NeuroSQL)
    model = load_model(out / "runs" / "vae-convnet-d2-s3", device="cpu")
    assert isinstance(model, VAE)
    saved = torch.from_numpy(__import__("numpy").load(out / "runs" / "vae-convnet-d2-s3" / "samples.npy"))
    assert torch.equal(model.sample(len(saved), seed=3), saved)


def test_changed_settings_are_not_mixed_with_old_results(bench):
    out, _ = bench
    with pytest.raises(NeuroSQLError, match="result for other settings"):
        run_benchmark(out, **{**TINY, "eval_n": 17})


def test_rerun_skips_finished_runs_and_restarts_crashed_ones(bench):
    out, _ = bench
    runs = out / "runs"
    stamps = {p.name: (p / "model.pt").stat().st_mtime_ns for p in runs.iterdir()}
    run_benchmark(out, **TINY)
    assert {p.name: (p / "model.pt").stat().st_mtime_ns for p in runs.iterdir()} == stamps
    crashed = runs / "vae-convnet-d2-s3"
    (crashed / "result.json").unlink()
    (crashed / "partial.tmp").write_text("left by a crash")
    results = run_benchmark(out, **TINY)
    assert len(results) == 2
    assert not (crashed / "partial.tmp").exists() and (crashed / "result.json").is_file()
    assert (crashed / "model.pt").stat().st_mtime_ns != stamps[crashed.name]
    kept = "neurosql-convnet-d2-s3-exact-ssim_l1"
    assert (runs / kept / "model.pt").stat().st_mtime_ns == stamps[kept]


def test_preset_fills_what_the_flags_leave_open():
    parser = argparse.ArgumentParser()
    add_benchmark_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["benchmark", "--out", "x", "--preset", "mnist-default", "--lr", "0.01"])
    preset = _resolved(args)
    assert preset["latent_dims"] == "2,16" and preset["methods"] == "neurosql,vae,gan,ddpm"
    assert _resolved_budget(args) == {"epochs": 10, "lr": 0.01}  # the preset's epochs, the flag's lr
    args = parser.parse_args(["benchmark", "--out", "x", "--preset", "mnist-default", "--steps", "50"])
    assert _resolved_budget(args) == {"steps": 50}  # a given budget replaces the preset's
    paper = parser.parse_args(["benchmark", "--out", "x", "--preset", "paper-mnist"])
    assert _resolved_budget(paper) == {"epochs": 120, "batch_size": 64, "lr": 2e-4, "warmup": 0.0, "ema": 0.0,
                                       "patience": 25, "sampler": "prior", "code_noise": 0.0,
                                       "colour_warmup": 0.0, "redraw_lattice": 0.0}
    assert _resolved(paper)["eval_n"] == 2048 and _resolved(paper)["latent_dims"] == "2,3"
    paper = parser.parse_args(["benchmark", "--out", "x", "--preset", "paper-mnist", "--steps", "500"])
    assert _resolved_budget(paper) == {"steps": 500, "batch_size": 64, "lr": 2e-4, "warmup": 0.0, "ema": 0.0,
                                       "patience": 25, "sampler": "prior", "code_noise": 0.0,
                                       "colour_warmup": 0.0, "redraw_lattice": 0.0}
    plain = parser.parse_args(["benchmark", "--out", "x", "--methods", "vae"])
    assert _resolved(plain)["methods"] == "vae" and _resolved(plain)["limit"] is None
    assert _resolved(plain)["latent_dims"] == "16" and _resolved_budget(plain) == {}


def test_tables_average_over_dimensions_and_bold_the_best(tmp_path):
    def row(method, d, pfid, ssim):
        return dict(name=f"{method}{d}", method=method, generator="convnet", latent_dim=d, seed=0,
                    assignment="exact" if method == "neurosql" else None, cost="ssim_l1" if method == "neurosql" else None,
                    pfid=pfid, ssim=ssim, n_parameters=1000, updates=5, mean_epoch_s=1.0, peak_rss_train_mb=100.0)

    results = [row("neurosql", 2, 1.0, 0.6), row("neurosql", 4, 3.0, 0.4), row("vae", 2, 2.0, 0.1), row("vae", 4, 4.0, 0.3)]
    text = write_tables(tmp_path / "summary.md", results).read_text()
    # mean ± sample std over d ∈ {2, 4}: neurosql pFID 2 ± 1.4, SSIM 0.5 ± 0.14 (both best); vae 3 ± 1.4, 0.2 ± 0.14
    assert "| neurosql | **2 ± 1.4** | **0.5 ± 0.14** |" in text
    assert "| vae | 3 ± 1.4 | 0.2 ± 0.14 |" in text
    assert "| 4 | vae | 4 | 0.3 |" in text and "| 4 | neurosql | **3** | **0.4** |" in text
