"""Crash-safe training: checkpoints, resume equal to an uninterrupted run, SIGKILL, divergence."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from neurosql import NeuroSQL, NeuroSQLError

CFG = dict(latent_dim=3, width=8, epochs=6, assign_every=2, batch_size=16, lr=1e-2, progress=False, seed=4, val_fraction=0.2)


def _same_state(a: NeuroSQL, b: NeuroSQL) -> None:
    for (name, p), q in zip(a.generator_.state_dict().items(), b.generator_.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.equal(a.codes_, b.codes_)
    assert np.array_equal(a.perm_, b.perm_)


def _crash_after_steps(model: NeuroSQL, steps: int, error=KeyboardInterrupt) -> None:
    """Make the model's generator step fail once ``steps`` steps have run."""
    calls = {"n": 0}
    real_step = model._train_step

    def step(x, idx):
        calls["n"] += 1
        if calls["n"] > steps:
            raise error()
        return real_step(x, idx)

    model._train_step = step


@pytest.mark.parametrize("assign_batch", [0, 16])
def test_resume_equals_uninterrupted_run(digits, tmp_path, assign_batch):
    full = NeuroSQL(**CFG, assign_batch=assign_batch).fit(digits)
    # The same run stopped after 3 epochs (as a crash would), then resumed from its checkpoint.
    path = tmp_path / "model.pt"
    crashing = NeuroSQL(**CFG, assign_batch=assign_batch)
    _crash_after_steps(crashing, 9)  # 38 training images in batches of 16: 3 steps per epoch
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(digits, checkpoint=path)
    assert NeuroSQL.load(path).epochs_run_ == 3
    resumed = NeuroSQL.resume(path, digits)
    assert resumed.epochs_run_ == 6
    _same_state(full, resumed)
    assert [r["train_loss"] for r in resumed.log_.rows] == [r["train_loss"] for r in full.log_.rows]


def test_resume_rejects_other_data(digits, tmp_path):
    path = tmp_path / "model.pt"
    NeuroSQL(**CFG).fit(digits, checkpoint=path)
    with pytest.raises(NeuroSQLError, match="same training data"):
        NeuroSQL.resume(path, digits[:20])


SCRIPT = """
import sys, torch
from neurosql import NeuroSQL
from neurosql.data import load_data
X = load_data(None, "train", limit=64, progress=False).images
kwargs = dict(latent_dim=3, width=8, epochs=int(sys.argv[2]), assign_every=2, batch_size=16, progress=False, seed=2)
if sys.argv[3] == "resume":
    NeuroSQL.resume(sys.argv[1], X)
else:
    NeuroSQL(**kwargs).fit(X, checkpoint=sys.argv[1])
"""


def test_sigkill_then_resume_completes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "model.pt"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), "40", "fit"])
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(np.random.default_rng().uniform(0.0, 1.0))  # a random moment after the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = NeuroSQL.load(ckpt).epochs_run_  # the last good checkpoint still loads
    assert 1 <= killed_at <= 40
    subprocess.run([sys.executable, str(script), str(ckpt), "40", "resume"], check=True, timeout=600)
    assert NeuroSQL.load(ckpt).epochs_run_ == 40
    assert not list(tmp_path.glob(".model.pt.*"))  # no temporary left behind after a clean finish


def test_divergence_stops_with_clear_error_and_keeps_last_checkpoint(digits, tmp_path):
    path = tmp_path / "model.pt"
    model = NeuroSQL(**{**CFG, "epochs": 4})
    real_step = model._train_step
    calls = {"n": 0}

    def poisoned_step(x, idx):
        calls["n"] += 1
        return real_step(x, idx) if calls["n"] <= 6 else {"train_loss": float("nan")}

    model._train_step = poisoned_step
    with pytest.raises(NeuroSQLError, match="diverged at epoch 3"):
        model.fit(digits, checkpoint=path)
    assert NeuroSQL.load(path).epochs_run_ == 2
