"""Every method through the one engine: the CLI's --method, resume, sample and evaluate; exact resume
of a killed baseline; scikit-learn parameters; the one checkpoint schema and the checkpoints of
release 0.2 (committed fixtures); re-running a recorded run with --config."""

import json

import numpy as np
import pytest
import torch

from neurosql import NeuroSQL, NeuroSQLConfig, NeuroSQLError
from neurosql.cli import main
from neurosql.engine import trainer
from neurosql.methods import METHODS, VAE, build_method, load_model
from neurosql.metrics import LEAD_KEYS
from neurosql.persistence import CHECKPOINT_FORMAT, load_checkpoint

SMALL = ["--latent-dim", "2", "--width", "8", "--limit", "40", "--resolution", "16", "--no-progress"]
TINY_DDPM = ["--timesteps", "20", "--sample-steps", "4"]


@pytest.mark.parametrize("method", ["vae", "gan", "ddpm"])
def test_cli_trains_resumes_samples_and_evaluates_every_method(tmp_path, method, capsys):
    out = tmp_path / "run"
    extra = TINY_DDPM if method == "ddpm" else []
    assert main(["train", "--method", method, "--epochs", "2", "--out", str(out), *SMALL, *extra, "--no-evaluate"]) == 0
    assert json.loads((out / "config.json").read_text())["method"] == method
    assert load_model(out).epochs_run_ == 2
    assert main(["train", "--resume", str(out), "--epochs", "4", "--no-evaluate"]) == 0
    model = load_model(out)
    assert model.kind == method and model.epochs_run_ == 4 and len(model.log_.rows) == 4
    assert [r["epoch"] for r in model.log_.rows] == [1, 2, 3, 4]
    assert main(["sample", "--checkpoint", str(out), "-n", "6", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 16, 16)
    assert main(["evaluate", "--checkpoint", str(out), "-n", "40", "--no-downstream"]) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert np.isfinite(metrics["pfid"])
    lead = [k for k in LEAD_KEYS if k in metrics]  # what sees sample quality comes first in the file
    assert "nn1_accuracy_vgg" in lead and list(metrics)[: len(lead)] == lead
    # G at the training codes bounds the samples' VGG metrics; the GAN and the DDPM keep no codes
    assert (metrics.get("fd_vgg_ceiling") is not None) == (method == "vae")


def _crash_after(model, steps: int) -> None:
    """Make the model's training step raise KeyboardInterrupt once ``steps`` steps have run."""
    calls, real = {"n": 0}, model._train_step

    def step(x, idx):
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        return real(x, idx)

    model._train_step = step


@pytest.mark.parametrize("method", ["vae", "gan", "ddpm"])
def test_killed_baseline_resumes_to_the_uninterrupted_weights(digits, tmp_path, method):
    params = dict(latent_dim=3, width=8, epochs=5, batch_size=16, lr=1e-2, progress=False, seed=1, val_fraction=0.2,
                  **({"timesteps": 20, "sample_steps": 4, "denoiser_width": 4} if method == "ddpm" else {}))
    full = build_method(method, **params).fit(digits)
    crashing, path = build_method(method, **params), tmp_path / "model.pt"
    _crash_after(crashing, 10)  # 38 training images in batches of 16: 3 steps per epoch, so a crash in epoch 4
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(digits, checkpoint=path)
    assert load_model(path).epochs_run_ == 3
    resumed = type(full).resume(path, digits)
    assert resumed.epochs_run_ == full.epochs_run_
    for name, net in full.networks_.items():
        for (key, a), b in zip(net.state_dict().items(), resumed.networks_[name].state_dict().values()):
            assert torch.equal(a, b), (name, key)
    assert [r["train_loss"] for r in resumed.log_.rows] == [r["train_loss"] for r in full.log_.rows]
    assert torch.equal(full.sample(4, seed=0), resumed.sample(4, seed=0))


def test_parameters_read_set_and_clone_like_scikit_learn():
    model = NeuroSQL(latent_dim=5, lr=1e-3)
    assert model.latent_dim == 5 and model.lr == 1e-3 and model.momentum == NeuroSQLConfig().momentum
    params = model.get_params()
    assert params == NeuroSQLConfig(latent_dim=5, lr=1e-3).to_dict()
    assert model.set_params(momentum=0.5) is model and model.momentum == 0.5
    twin = model.clone()
    assert twin is not model and twin.get_params() == model.get_params() and "networks_" not in vars(twin)
    twin.set_params(lr=0.1)
    assert model.lr == 1e-3  # the clone's parameters are its own
    assert VAE(beta=0.1).clone().beta == 0.1
    with pytest.raises(NeuroSQLError, match="unknown parameter"):
        model.set_params(nosuch=1)
    with pytest.raises(AttributeError):
        model.nosuch
    with pytest.raises(NeuroSQLError, match="not fitted"):
        model.sample(2)


def test_setting_a_parameter_as_an_attribute_changes_training(digits):
    """``model.epochs = 1`` is set_params(epochs=1): the config fit reads changes, no stray attribute."""
    model = NeuroSQL(latent_dim=2, width=8, epochs=3, batch_size=16, progress=False)
    model.epochs, model.lr = 1, 1e-3
    assert model.get_params()["lr"] == 1e-3 and "lr" not in vars(model)
    model.fit(digits)
    assert model.epochs_run_ == 1 and model.training_.optimizations[0].updates == model.budget_.steps_per_epoch
    model.latent_dim = 0  # refused by the declared bounds when fit reads it
    with pytest.raises(NeuroSQLError, match="latent-dim must be >= 1"):
        model.fit(digits)


def test_one_checkpoint_schema_for_every_method(digits, tmp_path):
    for method in METHODS:
        params = dict(latent_dim=2, width=8, epochs=1, progress=False,
                      **({"timesteps": 20, "sample_steps": 4, "denoiser_width": 4} if method == "ddpm" else {}))
        build_method(method, **params).fit(digits, checkpoint=tmp_path / f"{method}.pt")
        state = load_checkpoint(tmp_path / f"{method}.pt")
        assert set(state) == {"kind", "format", "config", "networks", "extra", "training"}, method
        assert state["kind"] == method and state["format"] == CHECKPOINT_FORMAT
        assert {"image_shape", "train_index", "log", "epochs_run", "budget", "updates"} <= set(state["extra"])
        assert {"optimizations", "averages", "early_stopping", "best", "rng"} <= set(state["training"])


@pytest.mark.parametrize("fmt", [1, 2])
def test_checkpoints_of_unreleased_formats_are_refused_with_the_fix(fmt, tmp_path):
    """Formats 1 and 2 came from milestones before release 0.1.0; they are no longer read (README, Changelog)."""
    torch.save({"kind": "neurosql", "format": fmt, "config": {}}, tmp_path / "old.pt")
    with pytest.raises(NeuroSQLError, match=f"format {fmt}, from a milestone before release 0.1.0.*retrain"):
        load_model(tmp_path / "old.pt")


def test_config_reruns_a_recorded_run_with_overrides(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--method", "vae", "--epochs", "1", "--out", str(first), *SMALL, "--no-evaluate"]) == 0
    assert main(["train", "--config", str(first / "config.json"), "--lr", "0.001", "--out", str(second),
                 "--no-evaluate"]) == 0
    a, b = (json.loads((run / "config.json").read_text()) for run in (first, second))
    assert b["method"] == "vae" and b["data"] == a["data"]
    assert b["model"] == {**a["model"], "lr": 0.001}
    assert b["origin"] == {"config": str(first / "config.json"), "overrides": {"lr": 0.001}}
    # the same recorded run again, unchanged: the same model
    third = tmp_path / "third"
    assert main(["train", "--config", str(first), "--out", str(third), "--no-evaluate"]) == 0
    assert torch.equal(load_model(first).sample(3, seed=0), load_model(third).sample(3, seed=0))


def test_the_best_epochs_snapshot_keeps_its_own_codes(digits):
    """The snapshot early stopping restores holds a copy of the bank: later rounds, which update the
    codes in place, must not reach it (they did, so the best weights came back with the final codes)."""
    model = NeuroSQL(latent_dim=2, width=8, epochs=2, assign_every=1, batch_size=16, progress=False).fit(digits)
    snapshot = trainer.snapshot(model)
    codes, perm = snapshot["codes"].clone(), snapshot["perm"].clone()
    model.codes_[0] += 1.0
    model.perm_[[0, 1]] = model.perm_[[1, 0]]
    assert torch.equal(snapshot["codes"], codes) and torch.equal(snapshot["perm"], perm)
