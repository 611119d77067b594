"""The bad-input catalogue: every case ends with exit code 2 (a NeuroSQLError in the API),
one ``error:`` line on stderr naming the problem, no traceback, and every file as it was.

All cases share one folder (a tiny trained run, data files, broken checkpoints) and are
run from inside it, so "every file as it was" is checked over everything a command could touch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurosql import NeuroSQL, NeuroSQLError
from neurosql.methods import VAE
from neurosql.cli import main
from neurosql.persistence import load_checkpoint, save_checkpoint

TINY = ["--limit", "40", "--epochs", "2", "--batch-size", "64", "--latent-dim", "2", "--width", "8", "--assign-every", "1",
        "--no-progress", "--device", "cpu", "--no-evaluate"]


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under root (hidden ones too) with a digest of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _save_variant(run: Path, dest: Path, change) -> None:
    """A copy of run whose checkpoint (with a valid checksum) has been changed by ``change(state)``."""
    shutil.copytree(run, dest)
    state = load_checkpoint(run)
    change(state)
    save_checkpoint(state, dest / "model.pt")


@pytest.fixture(scope="module")
def world(tmp_path_factory, mnist):
    root = tmp_path_factory.mktemp("world")
    X, _ = mnist
    pixels = (X[:40, 0].numpy() * 255).astype(np.uint8)  # (40, 28, 28)
    assert main(["train", "--out", str(root / "run"), *TINY]) == 0
    np.save(root / "one.npy", pixels[:1])
    np.save(root / "nan.npy", np.where(np.arange(28) == 3, np.nan, pixels[:10] / 255.0))
    np.save(root / "range.npy", pixels[:10].astype(np.float32))  # 0..255 floats
    np.save(root / "rgb.npy", np.repeat(pixels[:, None], 3, axis=1))  # (40, 3, 28, 28)
    np.save(root / "d16.npy", pixels[:, :16, :16])
    (root / "tiny").mkdir()
    for i in range(12):
        Image.fromarray(np.full((1, 1), 40 * (i % 6), np.uint8)).save(root / "tiny" / f"{i}.png")
    (root / "mixed").mkdir()
    for i in range(12):
        side = 28 if i % 2 else 8
        Image.fromarray(pixels[i, :side, :side]).save(root / "mixed" / f"{i}.png")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not images\n")
    (root / "notarun").mkdir()
    (root / "notarun" / "keep.txt").write_text("mine\n")
    (root / "garbage").mkdir()
    (root / "garbage" / "model.pt").write_bytes(b"\0garbage")
    shutil.copytree(root / "run", root / "flipped")
    raw = bytearray((root / "flipped" / "model.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x10
    (root / "flipped" / "model.pt").write_bytes(bytes(raw))
    weights = lambda s: s["networks"]["generator"]["state"]
    _save_variant(root / "run", root / "missing_key", lambda s: s["extra"].pop("codes"))
    _save_variant(root / "run", root / "bad_shape", lambda s: weights(s).update({next(iter(weights(s))): torch.zeros(3)}))
    _save_variant(root / "run", root / "nan_weights", lambda s: next(iter(weights(s).values())).fill_(float("nan")))
    shutil.copytree(root / "run", root / "lost_data")
    config = json.loads((root / "lost_data" / "config.json").read_text())
    config["data"]["spec"] = f"npy:{root / 'deleted.npy'}"
    (root / "lost_data" / "config.json").write_text(json.dumps(config))
    return root


T = ["train", *TINY]
CLI_CASES = [  # (id, argv, words the one error line must contain)
    # settings, refused before any data is read
    ("epochs-0", [*T, "--epochs", "0", "--out", "new"], "epochs"),
    ("epochs-text", [*T, "--epochs", "abc", "--out", "new"], "invalid int"),
    ("epochs-negative", [*T, "--epochs", "-3", "--out", "new"], "epochs must be >= 1"),
    ("steps-0", [*T, "--steps", "0", "--out", "new"], "steps must be >= 1"),
    ("steps-text", [*T, "--steps", "1.5", "--out", "new"], "invalid int"),
    ("steps-and-epochs", [*T, "--steps", "100", "--out", "new"], "not both"),
    ("augment-unknown", [*T, "--augment", "rotate", "--out", "new"], "unknown augmentation 'rotate'"),
    ("ema-1", [*T, "--ema", "1", "--out", "new"], "ema must be in"),
    ("warmup-nan", [*T, "--warmup", "nan", "--out", "new"], "warmup must be a finite"),
    ("preset-unknown", [*T, "--preset", "fast", "--out", "new"], "invalid choice"),
    ("batch-size-0", [*T, "--batch-size", "0", "--out", "new"], "batch-size"),
    ("lr-0", [*T, "--lr", "0", "--out", "new"], "lr must be > 0"),
    ("lr-inf", [*T, "--lr", "inf", "--out", "new"], "lr must be a finite number"),
    ("lr-nan", [*T, "--lr", "nan", "--out", "new"], "lr must be a finite number"),
    ("weight-decay-nan", [*T, "--weight-decay", "nan", "--out", "new"], "weight-decay must be a finite"),
    ("weight-decay-negative", [*T, "--weight-decay", "-1", "--out", "new"], "weight-decay"),
    ("grad-clip-nan", [*T, "--grad-clip", "nan", "--out", "new"], "grad-clip must be a finite"),
    ("grad-clip-0", [*T, "--grad-clip", "0", "--out", "new"], "grad-clip"),
    ("val-fraction-1", [*T, "--val-fraction", "1", "--out", "new"], "val-fraction"),
    ("seed-negative", [*T, "--seed", "-1", "--out", "new"], "seed must be in"),
    ("seed-float", [*T, "--seed", "1e23", "--out", "new"], "invalid int"),
    ("seed-huge", [*T, "--seed", "100000000000000000000000", "--out", "new"], "seed must be in"),
    ("latent-dim-0", [*T, "--latent-dim", "0", "--out", "new"], "latent-dim"),
    ("momentum-0", [*T, "--momentum", "0", "--out", "new"], "momentum"),
    ("momentum-nan", [*T, "--momentum", "nan", "--out", "new"], "momentum must be a finite"),
    ("loss-unknown", [*T, "--loss", "ssim+l1", "--out", "new"], "invalid choice"),
    ("chroma-weight-negative", [*T, "--chroma-weight", "-1", "--out", "new"], "chroma-weight must be >= 0"),
    ("chroma-weight-nan", [*T, "--chroma-weight", "nan", "--out", "new"], "chroma-weight must be a finite"),
    ("colour-warmup-2", [*T, "--colour-warmup", "2", "--out", "new"], "colour-warmup must be in [0, 1]"),
    ("loss-yuv-grey", [*T, "--loss", "ssim_l1_yuv", "--out", "new"], "needs RGB images"),
    ("assign-every-0", [*T, "--assign-every", "0", "--out", "new"], "assign-every"),
    ("assign-batch-1", [*T, "--assign-batch", "1", "--out", "new"], "assign-batch"),
    ("checkpoint-every-0", [*T, "--checkpoint-every", "0", "--out", "new"], "checkpoint-every"),
    ("patience-0", [*T, "--patience", "0", "--out", "new"], "patience"),
    ("width-negative", [*T, "--width", "-1", "--out", "new"], "width"),
    ("width-3", [*T, "--width", "3", "--out", "new"], "width must be an integer >= 8"),
    ("width-huge", [*T, "--width", "1000000", "--out", "new"], "lower --width"),
    ("resolution-huge", [*T, "--resolution", "100000", "--out", "new"], "resolution must be in"),
    ("resolution-0", [*T, "--resolution", "0", "--out", "new"], "resolution must be in"),
    ("resolution-30", [*T, "--resolution", "30", "--out", "new"], "cannot produce 30x30"),
    ("limit-1", [*T, "--limit", "1", "--out", "new"], "--limit must be >= 2"),
    ("device-cuda", [*T, "--device", "cuda", "--out", "new"], "CUDA is not available"),
    ("device-unknown", [*T, "--device", "tpu9", "--out", "new"], "unknown device"),
    ("lattice-unknown", [*T, "--lattice", "nope", "--out", "new"], "invalid choice"),
    ("channels-2", [*T, "--channels", "2", "--out", "new"], "invalid choice"),
    # data
    ("data-kind-unknown", [*T, "--data", "imagenet:/nowhere", "--out", "new"], "unknown data kind"),
    ("data-missing", [*T, "--data", "nosuch.npy", "--out", "new"], "does not exist"),
    ("data-kind-no-path", [*T, "--data", "npy:", "--out", "new"], "needs a path"),
    ("data-one-image", [*T, "--data", "one.npy", "--out", "new"], "images"),
    ("data-1x1-pngs", [*T, "--data", "tiny", "--out", "new"], "1x1"),
    ("data-mixed-small", [*T, "--data", "mixed", "--out", "new"], "SSIM window"),
    ("data-nan", [*T, "--data", "nan.npy", "--out", "new"], "NaN"),
    ("data-0-255-floats", [*T, "--data", "range.npy", "--out", "new"], "[0, 1]"),
    ("data-text-file", [*T, "--data", "notes.txt", "--out", "new"], "cannot tell the layout"),
    ("data-empty-folder", [*T, "--data", "empty", "--out", "new"], "is empty"),
    # where the run goes
    ("out-existing-run", [*T, "--latent-dim", "8", "--out", "run"], "--overwrite"),
    ("out-existing-run-bad-width", [*T, "--width", "3", "--out", "run", "--overwrite"], "width"),
    ("out-existing-run-bad-data", [*T, "--data", "tiny", "--out", "run", "--overwrite"], "1x1"),
    ("out-empty-string", [*T, "--out", ""], "--out is empty"),
    ("out-is-a-file", [*T, "--out", "notes.txt"], "is a file"),
    ("out-under-a-file", [*T, "--out", "notes.txt/run"], "cannot write"),
    ("out-not-a-run", [*T, "--out", "notarun", "--overwrite"], "no run"),
    ("out-unwritable", [*T, "--out", "/proc/neurosql-run"], "cannot write"),
    # resume
    ("resume-missing", ["train", "--resume", "nosuch"], "cannot resume nosuch"),
    ("resume-not-a-run", ["train", "--resume", "notarun"], "cannot resume"),
    ("resume-ignored-flags", ["train", "--resume", "run", "--epochs", "5", "--lr", "1", "--out", "X"],
     "--lr, --out"),
    ("resume-method", ["train", "--resume", "run", "--method", "vae"], "--method"),
    ("method-foreign-flag", ["train", "--method", "gan", "--momentum", "0.5"], "--momentum does not apply to --method gan"),
    ("config-missing", ["train", "--config", "nosuch/config.json"], "not found"),
    ("config-not-a-run", ["train", "--config", "notes.txt"], "config.json"),
    ("resume-overwrite", ["train", "--resume", "run", "--overwrite"], "--overwrite"),
    ("resume-corrupt", ["train", "--resume", "flipped", "--no-evaluate"], "corrupt"),
    ("resume-lost-data", ["train", "--resume", "lost_data", "--no-evaluate"], "does not exist"),
    # sample
    ("sample-no-checkpoint-flag", ["sample"], "required"),
    ("sample-missing", ["sample", "--checkpoint", "nosuch"], "not found"),
    ("sample-n-0", ["sample", "--checkpoint", "run", "-n", "0"], "--num"),
    ("sample-n-huge", ["sample", "--checkpoint", "run", "-n", "1000000000000"], "lower -n"),
    ("sample-seed-negative", ["sample", "--checkpoint", "run", "--seed", "-1"], "--seed must be in"),
    ("sample-seed-float", ["sample", "--checkpoint", "run", "--seed", "1e23"], "invalid int"),
    ("sample-out-dir", ["sample", "--checkpoint", "run", "--out", "empty"], "is a directory"),
    ("sample-out-suffix", ["sample", "--checkpoint", "run", "--out", "s.gif"], "unknown suffix"),
    ("sample-out-no-folder", ["sample", "--checkpoint", "run", "--out", "nosuch/s.png"], "does not exist"),
    ("sample-out-unwritable", ["sample", "--checkpoint", "run", "--out", "/proc/s.png"], "cannot write"),
    ("sample-garbage", ["sample", "--checkpoint", "garbage"], "corrupt"),
    ("sample-bit-flip", ["sample", "--checkpoint", "flipped"], "corrupt"),
    ("sample-missing-key", ["sample", "--checkpoint", "missing_key"], "incomplete"),
    ("sample-wrong-shape", ["sample", "--checkpoint", "bad_shape"], "incomplete"),
    ("sample-nan-weights", ["sample", "--checkpoint", "nan_weights"], "NaN"),
    ("sample-device-cuda", ["sample", "--checkpoint", "run", "--device", "cuda"], "CUDA"),
    # evaluate
    ("evaluate-missing", ["evaluate", "--checkpoint", "nosuch"], "not found"),
    ("evaluate-split", ["evaluate", "--checkpoint", "run", "--split", "nope"], "unknown split"),
    ("evaluate-rgb", ["evaluate", "--checkpoint", "run", "--data", "rgb.npy"], "model makes"),
    ("evaluate-resolution", ["evaluate", "--checkpoint", "run", "--data", "d16.npy"], "model makes"),
    ("evaluate-num-1", ["evaluate", "--checkpoint", "run", "--num", "1"], "--num"),
    ("evaluate-lost-data", ["evaluate", "--checkpoint", "lost_data"], "does not exist"),
    ("evaluate-out-file", ["evaluate", "--checkpoint", "run", "--out", "notes.txt"], "is a file"),
    ("evaluate-corrupt", ["evaluate", "--checkpoint", "flipped"], "corrupt"),
    # the command itself
    ("no-command", [], "required"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(world, argv, words, capsys, monkeypatch):
    monkeypatch.chdir(world)
    before = tree(world)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert words in err
    assert tree(world) == before


@pytest.fixture(scope="module")
def fitted(world):
    return NeuroSQL.load(world / "run", device="cpu")


def _other_images(mnist, fitted):
    X, _ = mnist
    return X[1000:1000 + 40]  # as many images as the run's, other digits


API_CASES = [  # (id, call(world, fitted, mnist), words the message must contain)
    ("latent-dim-text", lambda w, m, d: NeuroSQL(latent_dim="4").fit(d[0][:8]), "latent-dim must be an integer"),
    ("epochs-bool", lambda w, m, d: NeuroSQL(epochs=True).fit(d[0][:8]), "epochs must be an integer"),
    ("lr-nan", lambda w, m, d: NeuroSQL(lr=float("nan")).fit(d[0][:8]), "lr must be a finite number"),
    ("progress-text", lambda w, m, d: NeuroSQL(progress="yes").fit(d[0][:8]), "progress must be true or false"),
    ("seed-negative", lambda w, m, d: NeuroSQL(seed=-1).fit(d[0][:8]), "seed must be in"),
    ("unknown-parameter", lambda w, m, d: NeuroSQL(bogus=1), "unknown"),
    ("vae-latent-dim-text", lambda w, m, d: VAE(latent_dim="4").fit(d[0][:8]), "latent-dim must be an integer"),
    ("one-image", lambda w, m, d: NeuroSQL().fit(d[0][:1]), "at least 2"),
    ("nan-images", lambda w, m, d: NeuroSQL().fit(torch.full((4, 1, 28, 28), float("nan"))), "NaN"),
    ("unfitted-sample", lambda w, m, d: NeuroSQL().sample(3), "not fitted"),
    ("sample-text", lambda w, m, d: m.sample("3"), "integer >= 1"),
    ("sample-float", lambda w, m, d: m.sample(2.5), "integer >= 1"),
    ("sample-0", lambda w, m, d: m.sample(0), "integer >= 1"),
    ("decode-nan", lambda w, m, d: m.decode(torch.full((2, 2), float("nan"))), "NaN"),
    ("decode-shape", lambda w, m, d: m.decode(torch.zeros(2, 3)), "shape"),
    ("decode-text", lambda w, m, d: m.decode("codes"), "numeric"),
    ("save-missing-folder", lambda w, m, d: m.save(w / "nosuch" / "model.pt"), "does not exist"),
    ("load-bit-flip", lambda w, m, d: NeuroSQL.load(w / "flipped"), "corrupt"),
    ("load-missing-key", lambda w, m, d: NeuroSQL.load(w / "missing_key"), "incomplete"),
    ("load-wrong-shape", lambda w, m, d: NeuroSQL.load(w / "bad_shape"), "incomplete"),
    ("resume-other-images", lambda w, m, d: NeuroSQL.resume(w / "run", _other_images(d, m)), "same training data"),
]


@pytest.mark.parametrize("call, words", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(world, fitted, mnist, call, words):
    before = tree(world)
    with pytest.raises(NeuroSQLError) as info:
        call(world, fitted, mnist)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert tree(world) == before


def test_catalogue_size():
    assert len(CLI_CASES) + len(API_CASES) >= 60
