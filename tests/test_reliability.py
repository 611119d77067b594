"""Faults and the guarantees around runs: a failed command never modifies a previous run,
--overwrite, poisoned weights never saved, changed data refused, checkpoints checksummed,
SIGKILL during a write, a full disk, sample formats, small data sets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurosql import NeuroSQL, NeuroSQLError
from neurosql.cli import main
from neurosql.persistence import load_checkpoint
from neurosql.runs import picture_rows
from test_bad_input import TINY, tree

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(latent_dim=3, width=8, epochs=3, assign_every=2, batch_size=16, lr=1e-2, progress=False, seed=4, val_fraction=0.2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny finished CLI run, copied by tests that change it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def _poison_after(monkeypatch, steps: int) -> None:
    """Step ``steps + 1`` and every later NeuroSQL generator step leave NaN weights behind (their loss is still finite)."""
    real = NeuroSQL._train_step
    calls = {"n": 0}

    def step(self, x, idx):
        loss = real(self, x, idx)
        calls["n"] += 1
        if calls["n"] > steps:
            with torch.no_grad():
                next(self.generator_.parameters()).fill_(float("nan"))
        return loss

    monkeypatch.setattr(NeuroSQL, "_train_step", step)


def _finite(model: NeuroSQL) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.generator_.state_dict().values() if p.is_floating_point())


# ---------------------------------------------------------------- 1, 2: previous runs
def test_overwrite_replaces_a_run_only_when_asked(run, tmp_path, capsys):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    before = tree(tmp_path)
    assert main(["train", *TINY, "--latent-dim", "3", "--out", str(target)]) == 2
    assert "--overwrite" in capsys.readouterr().err and tree(tmp_path) == before
    assert main(["train", *TINY, "--latent-dim", "3", "--out", str(target), "--overwrite"]) == 0
    assert json.loads((target / "config.json").read_text())["model"]["latent_dim"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the previous run moved aside is gone


def test_interrupted_overwrite_before_a_checkpoint_puts_the_previous_run_back(run, tmp_path, monkeypatch):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    before = tree(tmp_path)

    def interrupted(self, x, idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(NeuroSQL, "_train_step", interrupted)
    assert main(["train", *TINY, "--out", str(target), "--overwrite"]) == 130
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- 3: NaN guard
def test_weights_poisoned_by_an_epochs_last_step_are_never_saved(digits, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    _poison_after(monkeypatch, 5)  # 38 images in batches of 16: 3 steps an epoch, the 6th ends epoch 2
    with pytest.raises(NeuroSQLError, match="diverged at epoch 2.*last good checkpoint"):
        NeuroSQL(**CFG).fit(digits, checkpoint=path)
    kept = NeuroSQL.load(path)
    assert kept.epochs_run_ == 1 and _finite(kept)
    assert bool(torch.isfinite(kept.sample(4, seed=0)).all())


def test_cli_divergence_in_the_first_epoch_leaves_nothing(tmp_path, monkeypatch, capsys):
    _poison_after(monkeypatch, 0)
    assert main(["train", *TINY, "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "diverged at epoch 1" in err and "checkpoint" not in err  # no checkpoint was written, none is named
    assert not (tmp_path / "g").exists()


def test_cli_divergence_later_keeps_the_finite_checkpoint_it_names(tmp_path, monkeypatch, capsys):
    _poison_after(monkeypatch, 1)  # TINY: one step an epoch, so epoch 2 is poisoned
    out = tmp_path / "g"
    assert main(["train", *TINY, "--out", str(out)]) == 2
    assert f"last good checkpoint is {out / 'model.pt'}" in capsys.readouterr().err
    kept = NeuroSQL.load(out)
    assert kept.epochs_run_ == 1 and _finite(kept)


# ---------------------------------------------------------------- 4: changed data
def test_resume_refuses_other_images_of_the_same_shape(mnist, tmp_path, capsys):
    X, _ = mnist
    data = tmp_path / "d.npy"
    np.save(data, (X[:40].numpy() * 255).astype(np.uint8))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(data), "--out", str(out)]) == 0
    model = NeuroSQL.load(out)
    model.config.epochs = 4  # as if the run had been cut after epoch 2 of 4
    model.save(out / "model.pt")
    np.save(data, (X[100:140].numpy() * 255).astype(np.uint8))  # other digits, same shape
    before = tree(tmp_path)
    assert main(["train", "--resume", str(out), "--no-evaluate"]) == 2
    assert "same training data" in capsys.readouterr().err
    assert tree(tmp_path) == before
    assert main(["evaluate", "--checkpoint", str(out), "--no-downstream"]) == 2
    assert "changed" in capsys.readouterr().err and tree(tmp_path) == before


# ---------------------------------------------------------------- 7: checksums
def test_every_bit_flip_is_refused_or_harmless(run, tmp_path):
    original = load_checkpoint(run)
    raw = (run / "model.pt").read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for position in rng.integers(0, len(raw), 40):
        flipped = bytearray(raw)
        flipped[position] ^= 1 << int(rng.integers(0, 8))
        (tmp_path / "model.pt").write_bytes(bytes(flipped))
        try:
            state = load_checkpoint(tmp_path / "model.pt")
        except NeuroSQLError as exc:
            assert "corrupt" in str(exc) or "not a NeuroSQL checkpoint" in str(exc)
            refused += 1
            continue
        # a flip in the container's bookkeeping can leave the payload intact: then it must load unchanged
        for name, value in original["generator"].items():
            assert torch.equal(state["generator"][name], value)
        assert torch.equal(state["codes"], original["codes"])
    assert refused >= 30  # the payload is most of the file


# ---------------------------------------------------------------- 6: SIGKILL during a write
KILLED_WHILE_SAVING = """
import os, sys, time
real_fsync = os.fsync
saves = {"n": 0}

def fsync(fd):
    real_fsync(fd)
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".model.pt."):
        saves["n"] += 1
        if saves["n"] == 2:  # the second checkpoint is on disk under its temporary name, not yet renamed
            print("saving", flush=True)
            time.sleep(600)

os.fsync = fsync
from neurosql.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see which file is written")
def test_sigkill_while_saving_leaves_an_orphan_that_the_next_start_removes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_SAVING, "train", *TINY, "--out", str(out)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(list(out.glob(".model.pt.*.tmp"))) == 1
    assert NeuroSQL.load(out).epochs_run_ == 1  # the previous checkpoint still loads
    assert main(["train", "--resume", str(out), "--no-evaluate"]) == 0
    assert not list(out.glob("*.tmp")) and NeuroSQL.load(out).epochs_run_ == 2


# ---------------------------------------------------------------- 5, 6: a full disk
@pytest.mark.skipif(sys.platform == "win32", reason="ulimit is POSIX")
@pytest.mark.parametrize("command", ["train", "sample"])
def test_full_disk_is_one_line_and_leaves_nothing(run, tmp_path, command):
    argv = ["train", *TINY, "--out", "new"] if command == "train" else ["sample", "--checkpoint", str(run), "--out", "s.png"]
    before = tree(tmp_path)
    limit = 20  # KiB: config.json fits, model.pt and samples.png do not
    proc = subprocess.run(["bash", "-c", f'ulimit -f {limit}; exec "$@"', "_", sys.executable, "-m", "neurosql", *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: cannot write") and proc.stderr.count("\n") == 1, proc.stderr
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- 9: sample formats
@pytest.mark.parametrize("name, written, picture", [
    ("s.npy", ["s.npy"], None), ("s.png", ["s.npy", "s.png"], "PNG"), ("s.jpg", ["s.jpg", "s.npy"], "JPEG"),
])
def test_sample_format_follows_the_suffix(run, tmp_path, capsys, name, written, picture):
    assert main(["sample", "--checkpoint", str(run), "-n", "5", "--out", str(tmp_path / name)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == written
    assert np.load(tmp_path / "s.npy").shape == (5, 1, 28, 28)
    if picture:
        assert Image.open(tmp_path / name).format == picture
    assert capsys.readouterr().out.count(name) == 1  # each path once


# ---------------------------------------------------------------- 11: small data sets
def test_train_on_twenty_images_warns_once_and_succeeds(mnist, tmp_path, capsys):
    X, _ = mnist
    (tmp_path / "imgs").mkdir()
    for i in range(20):
        Image.fromarray((X[i, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    argv = ["train", *[a for a in TINY if a not in ("--limit", "40", "--no-evaluate")], "--data", str(tmp_path / "imgs")]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("warning: ") for line in lines) and sum("skipped" in line for line in lines) == 1, lines
    assert all("reconstructions of its training images are poor" in line for line in lines  # a tiny budget
               if "skipped" not in line), lines
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics.get("skipped") or metrics.get("prdc_reason")  # too few test images for k-NN metrics


# ---------------------------------------------------------------- 12, 14
def test_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"


def test_pictures_show_every_class_of_data_sorted_by_class():
    labels = np.repeat(np.arange(10), 50)  # a test split ordered by class
    rows = picture_rows(len(labels), 32, seed=0)
    assert len(set(rows.tolist())) == 32 and len(set(labels[rows.numpy()])) >= 8
    assert torch.equal(rows, picture_rows(len(labels), 32, seed=0))


# ---------------------------------------------------------------- issue 23: divergence that overflows
def test_an_overflowing_learning_rate_is_the_divergence_error(tmp_path, capsys):
    assert main(["train", *TINY, "--lr", "1e300", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "diverged at epoch 1" in err and err.count("\n") == 1, err
    assert not (tmp_path / "g").exists()


def test_a_diverging_overwrite_puts_the_previous_run_back_and_says_so(run, tmp_path, capsys):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    before = tree(tmp_path)
    assert main(["train", *TINY, "--lr", "1e300", "--out", str(target), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and f"the previous run in {target} was put back" in err and err.count("\n") == 1, err
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- issue 23: resume
def test_resume_removes_only_its_own_temporaries_and_takes_display_flags(run, tmp_path, capsys):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    mine = [target / ".notes.draft.tmp", target / ".notes.abcd1234.tmp", target / "model.pt.tmp"]
    for path in mine:
        path.write_text("a user's file\n")
    (target / ".model.pt.abcd1234.tmp").write_bytes(b"half a checkpoint")  # what a killed save leaves
    assert main(["train", "--resume", str(target), "--epochs", "3", "--no-progress", "--no-evaluate"]) == 0
    assert all(path.read_text() == "a user's file\n" for path in mine)
    assert not (target / ".model.pt.abcd1234.tmp").exists() and NeuroSQL.load(target).epochs_run_ == 3


# ---------------------------------------------------------------- issue 23: one run per directory
def test_a_stale_lock_of_a_killed_process_does_not_block(tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / ".g.lock").write_text(f"{gone.pid}\n")
    assert main(["train", *TINY, "--out", str(tmp_path / "g")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # the lock is gone with the run written


def test_a_lock_is_released_and_its_folders_removed_when_the_run_fails(tmp_path, monkeypatch, capsys):
    _poison_after(monkeypatch, 0)
    assert main(["train", *TINY, "--out", str(tmp_path / "a" / "b" / "g")]) == 2
    assert list(tmp_path.iterdir()) == []


TWO_AT_ONCE = """
import sys, time
from neurosql.methods.neurosql import NeuroSQL
real = NeuroSQL._setup
def slow(self, *args, **kwargs):  # hold the directory long enough for the other process to try it
    time.sleep(2)
    return real(self, *args, **kwargs)
NeuroSQL._setup = slow
from neurosql.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_runs_into_one_directory_one_is_refused(tmp_path):
    argv = [sys.executable, "-c", TWO_AT_ONCE, "train", *TINY, "--out", str(tmp_path / "x")]
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [code for code, _ in results] == [0, 2], results
    err = results[1][1]
    assert err.startswith("error:") and err.count("\n") == 1 and ("being written" in err or "already holds" in err), err


# ---------------------------------------------------------------- issue 23: warnings, one line each
def test_cli_warnings_are_one_line_naming_what_was_done(mnist, tmp_path, capsys):
    X, _ = mnist
    (tmp_path / "imgs").mkdir()
    for i in range(40):
        Image.fromarray((X[i, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG truncated")
    assert main(["train", *TINY, "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [line for line in lines if line.startswith("warning: ")], lines
    assert any("skipped 1 of" in line and "broken.png" in line for line in lines), lines


def test_epochs_not_above_k_warn_that_codes_are_never_reassigned(digits):
    with pytest.warns(UserWarning, match="never reassigned"):
        NeuroSQL(**{**CFG, "epochs": 2, "assign_every": 3}).fit(digits)


# ---------------------------------------------------------------- issue 23: valid input accepted
def _medmnist(path: Path, pixels: np.ndarray, test: int) -> Path:
    labels = np.arange(len(pixels)).reshape(-1, 1) % 2
    np.savez(path, train_images=pixels, train_labels=labels, val_images=pixels[:4], val_labels=labels[:4],
             test_images=pixels[:test], test_labels=labels[:test])
    return path


def test_medmnist_with_an_empty_test_split_trains_and_skips_the_evaluation(mnist, tmp_path, capsys):
    X, _ = mnist
    data = _medmnist(tmp_path / "m.npz", (X[:40, 0].numpy() * 255).astype(np.uint8), test=0)
    argv = [a for a in TINY if a != "--no-evaluate"]
    assert main(["train", *argv, "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: evaluation skipped") and err.count("\n") == 1, err
    assert "skipped" in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_hidden_folders_and_files_are_not_data(mnist, tmp_path):
    from neurosql.data import load_data

    X, _ = mnist
    for folder in ("a", "b", ".thumbnails", "__MACOSX", ".ipynb_checkpoints", "a/.cache"):
        (tmp_path / folder).mkdir()
        for i in range(10):
            Image.fromarray((X[i, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / folder / f"{i}.png")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"not an image")
    data = load_data(f"folder:{tmp_path}", "all", progress=False)
    assert data.class_names == ["a", "b"] and len(data) == 20


def test_oasis_folders_spelled_as_the_paper_spells_them(mnist, tmp_path):
    from neurosql.data import load_data
    from neurosql.data.sources import detect_layout

    X, _ = mnist
    for c, folder in enumerate(("Non Demented", "Very Mild Demented", "Mild Demented", "Moderate Demented")):
        (tmp_path / folder).mkdir()
        for s in range(5):
            Image.fromarray((X[5 * c + s, 0].numpy() * 255).astype(np.uint8)).save(
                tmp_path / folder / f"OAS1_{10 * c + s:04d}_MR1_slice_100.png")
    assert detect_layout(tmp_path) == "oasis"
    data = load_data(str(tmp_path), "all", resolution=28, progress=False)
    assert sorted(set(data.labels.tolist())) == [0, 1, 2, 3]


def test_nifti_slices_of_an_unsupported_size_name_the_nearest_resolutions(tmp_path, capsys):
    import nibabel as nib

    volume = np.random.default_rng(0).random((20, 20, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    before = tree(tmp_path)
    assert main(["train", *TINY, "--data", f"nifti:{tmp_path / 'v.nii.gz'}", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "cannot produce 20x20" in err and "--resolution 16 or 28" in err and err.count("\n") == 1, err
    assert tree(tmp_path) == before


def test_interpolations_of_a_model_that_saw_one_class(run):
    from neurosql.evaluation import interpolation_strip

    model = NeuroSQL.load(run)
    strip = interpolation_strip(model, np.zeros(len(model.train_index_), dtype=np.int64))
    assert strip.shape == (60, 1, 28, 28)


def test_nifti_inf_voxels_are_set_to_zero_with_one_warning_naming_the_file(tmp_path):
    import nibabel as nib
    from neurosql.data import load_data

    volume = np.random.default_rng(0).random((28, 28, 12)).astype(np.float32)
    volume[3, 4, 5] = np.inf
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    with pytest.warns(UserWarning, match=r"v\.nii\.gz holds 1 NaN or Inf voxels; they were set to 0"):
        data = load_data(f"nifti:{tmp_path / 'v.nii.gz'}", "all", progress=False)
    assert bool(torch.isfinite(data.images).all())
