"""Experiment logging: TensorBoard through the epoch callback, and plain progress lines in log files."""

import csv

import pytest

from neurosql import NeuroSQL
from neurosql.cli import main

TINY = ["--limit", "40", "--epochs", "3", "--assign-every", "1", "--latent-dim", "2", "--width", "8", "--no-progress",
        "--no-evaluate", "--device", "cpu"]


def test_tensorboard_logs_every_epoch_row_and_a_sample_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, "--logger", "tensorboard"]) == 0
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    with open(out / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    for key, tag in (("train_loss", "train/train_loss"), ("assign_cost", "train/assign_cost"),
                     ("time_generator", "time/time_generator")):
        logged = {e.step: e.value for e in events.Scalars(tag)}
        expected = {int(r["epoch"]): float(r[key]) for r in log if r[key] != ""}
        assert logged.keys() == expected.keys() and all(logged[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())
    grids = events.Images("samples")
    assert [g.step for g in grids] == [3]  # every 5 epochs and at the last
    assert grids[0].width > 28 and grids[0].height > 28


def test_plain_progress_lines_and_a_user_callback(mnist, capsys):
    """Where stderr is not a terminal, one line per epoch; a callback (how W&B or MLflow plug in) sees every row."""
    X, _ = mnist
    seen = []
    model = NeuroSQL(latent_dim=2, width=8, epochs=3, assign_every=1, progress=True)
    model.fit(X[:24], callback=lambda fitted, row: seen.append((fitted is model, dict(row))))
    assert seen == [(True, row) for row in model.log_.rows] and len(seen) == 3
    err = capsys.readouterr().err  # captured: not a terminal
    lines = [line for line in err.splitlines() if line.startswith("NeuroSQL:")]
    assert len(lines) == 3 and "\r" not in err
    assert all(f"epoch {e}" in line and "loss" in line for e, line in zip((1, 2, 3), lines))
