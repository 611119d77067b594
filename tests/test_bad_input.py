"""The bad-input catalogue: every case ends with exit code 2 (a NeuroSQLError in the API),
one ``error:`` line on stderr naming the problem, no traceback, and every file as it was.

All cases share one folder (a tiny trained run, data files, broken checkpoints) and are
run from inside it, so "every file as it was" is checked over everything a command could touch.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurosql import NeuroSQL, NeuroSQLError
from neurosql.methods import CONFIGS, VAE
from neurosql.cli import main
from neurosql.data import load_data
from neurosql.persistence import load_checkpoint, save_checkpoint

TINY = ["--limit", "40", "--epochs", "2", "--batch-size", "64", "--latent-dim", "2", "--width", "8", "--assign-every", "1",
        "--no-progress", "--device", "cpu", "--no-evaluate"]


def tree(root: Path) -> dict[str, str]:
    """Every file, folder and symbolic link under root (hidden ones too) with a digest of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        digest = lambda: "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = f"link to {os.readlink(p)}" if p.is_symlink() else digest()
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
    assert main(["train", "--method", "gan", "--out", str(root / "gan"), "--limit", "40", "--epochs", "1", "--latent-dim", "2",
                 "--width", "8", "--no-progress", "--device", "cpu", "--no-evaluate"]) == 0
    (root / "sampled").mkdir()
    np.save(root / "sampled" / "samples.npy", pixels[:2])
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
    (root / "stack").mkdir()
    pages = [Image.fromarray(pixels[i]) for i in range(3)]
    pages[0].save(root / "stack" / "pages.tif", save_all=True, append_images=pages[1:])
    for i in range(11):
        Image.fromarray(pixels[i]).save(root / "stack" / f"{i}.png")
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
    _add_round_two(root, pixels)
    return root


def _add_round_two(root: Path, pixels: np.ndarray) -> None:
    """Files for the cases of issue 23: configs, archives, symlinks, locks, a foreign checkpoint, hidden folders."""
    (root / "corrupt.json").write_text('{"method": "neurosql", "model": {')
    (root / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(root / "run", root / "bad_config")
    (root / "bad_config" / "config.json").write_text("{not json")
    good = json.loads((root / "run" / "config.json").read_text())
    for name, section, key, value in CONFIG_VALUES:
        record = json.loads(json.dumps(good))
        if section is None:
            record[key] = value
        else:
            record[section][key] = value
        (root / f"{name}.json").write_text(json.dumps(record))
    for name, write in archive_faults(pixels).items():
        write(root / name)
    (root / "link").symlink_to(root / "run")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "sdir.npy").mkdir()
    (root / "sdir.npy" / "keep.txt").write_text("mine\n")
    shutil.copytree(root / "run", root / "locked")
    (root / ".locked.lock").write_text(f"{os.getpid()}\n")  # held by a live process: this one
    (root / ".newlock.lock").write_text(f"{os.getpid()}\n")
    vae = VAE(latent_dim=2, width=8, epochs=1, batch_size=64, progress=False, device="cpu").fit(
        torch.from_numpy(pixels[:16, None] / 255.0).float())
    shutil.copytree(root / "run", root / "foreign")
    vae.save(root / "foreign" / "model.pt")
    for hidden in (".thumbnails", "__MACOSX", ".ipynb_checkpoints"):
        (root / "hidden_only" / hidden).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(pixels[i]).save(root / "hidden_only" / hidden / f"{i}.png")
    (root / "hidden_only" / ".dotfile.png").write_bytes(b"not an image")


def archive_faults(pixels: np.ndarray) -> dict:
    """File name -> writer, for every archive reader (npy, npz, MedMNIST) x truncated, CRC-damaged, empty,
    text, renamed and pickled files."""
    def npz_bytes(**arrays) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def npy_bytes(array) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        return buffer.getvalue()

    def crc_damaged(raw: bytes, kind: str) -> bytes:
        flipped = bytearray(raw)
        # a .npy has no checksum: damage its header; in a zip, the first member's data, so its CRC no longer matches
        flipped[12 if kind == "npy" else len(raw) // 3] ^= 0xFF
        return bytes(flipped)

    images = pixels[:20]
    medmnist = npz_bytes(**{f"{p}_{w}": (images if w == "images" else np.zeros((20, 1), np.uint8))
                            for p in ("train", "val", "test") for w in ("images", "labels")})
    payloads = {
        "npy": npy_bytes(images), "npz": npz_bytes(x=images), "medmnist": medmnist,
    }
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, [1, 2]]
    faults = {}
    for kind, raw in payloads.items():
        suffix = ".npy" if kind == "npy" else ".npz"
        faults[f"{kind}-truncated{suffix}"] = raw[: len(raw) // 2]
        faults[f"{kind}-crc{suffix}"] = crc_damaged(raw, kind)
        faults[f"{kind}-empty{suffix}"] = b""
        faults[f"{kind}-text{suffix}"] = b"images, labels\n1, 2\n"
        faults[f"{kind}-renamed{suffix}"] = npz_bytes(x=images) if kind == "npy" else npy_bytes(images)
        faults[f"{kind}-pickled{suffix}"] = (npy_bytes(objects) if kind == "npy" else
                                            npz_bytes(**{k: objects for k in ("x", *MEDMNIST_KEYS)}))
    return {name: (lambda raw: lambda path: path.write_bytes(raw))(raw) for name, raw in faults.items()}


MEDMNIST_KEYS = tuple(f"{p}_{w}" for p in ("train", "val", "test") for w in ("images", "labels"))


WRONG_TYPES = {int: ("3", 2.5, [3], True), float: ("0.1", [0.1], True, float("nan")), str: (5, ["x"]),
               bool: ("yes", 1), dict: ("x", [1])}
DATA_VALUES = {"spec": (5, ["x"]), "resolution": ("64", [64], 0, 10**9), "channels": (2, "1"),
               "limit": ("10", 10.5, 0), "options": ("x", [1])}


def _config_values() -> list[tuple]:
    """(case name, section, key, value): a wrong type for every setting of a NeuroSQL run's config.json,
    and wrong types or values for every data setting and the method."""
    values = []
    for f in fields(CONFIGS["neurosql"]):
        for i, value in enumerate(WRONG_TYPES[f.metadata.get("type", type(f.default))]):
            values.append((f"cfg-{f.name}-{i}", "model", f.name, value))
    for key, wrong in DATA_VALUES.items():
        values += [(f"cfg-data-{key}-{i}", "data", key, value) for i, value in enumerate(wrong)]
    values += [(f"cfg-method-{i}", None, "method", value) for i, value in enumerate((["vae"], 5, "nope"))]
    return values


CONFIG_VALUES = _config_values()

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
    ("code-noise-negative", [*T, "--code-noise", "-0.5", "--out", "new"], "code-noise must be >= 0, got -0.5"),
    ("code-noise-inf", [*T, "--code-noise", "inf", "--out", "new"], "code-noise must be a finite"),
    ("redraw-lattice-2", [*T, "--redraw-lattice", "2", "--out", "new"], "redraw-lattice must be in [0, 1]"),
    ("loss-yuv-grey", [*T, "--loss", "ssim_l1_yuv", "--out", "new"], "needs RGB images"),
    ("assign-every-0", [*T, "--assign-every", "0", "--out", "new"], "assign-every"),
    ("assign-batch-1", [*T, "--assign-batch", "1", "--out", "new"], "assign-batch"),
    ("assign-batch-negative", [*T, "--assign-batch", "-5", "--out", "new"], "assign-batch must be >= 0, got -5"),
    ("assign-batch-text", [*T, "--assign-batch", "abc", "--out", "new"], "expected 'auto' or an integer, got 'abc'"),
    # Alg. 2's batches cannot hold more than the 40 training images (validation has its own split)
    ("assign-batch-above-n", [*T, "--assign-batch", "41", "--out", "new"], "assign-batch 41 is larger than the 40"),
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
    ("device-mps", [*T, "--device", "mps", "--out", "new"], "MPS (Apple silicon) is not available"),
    ("device-cuda-3", [*T, "--device", "cuda:3", "--out", "new"], "CUDA is not available"),
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
    ("data-tiff-stack", [*T, "--data", "stack", "--out", "new"], "pages.tif holds 3 pages (a TIFF stack)"),
    ("window-reversed", [*T, "--data", "stack", "--window", "400,-1000", "--out", "new"], "LO < HI"),
    ("window-text", [*T, "--data", "stack", "--window", "lung", "--out", "new"], "two numbers LO,HI"),
    ("window-mnist5k", [*T, "--window", "0,255", "--out", "new"], "unknown option 'window'"),
    ("dicom-not-dicom", [*T, "--data", "dicom:tiny", "--out", "new"], "DICOM"),
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
    ("sample-n-0", ["sample", "--checkpoint", "run", "-n", "0"], "num must be >= 1, got 0"),
    ("sample-n-huge", ["sample", "--checkpoint", "run", "-n", "1000000000000"], "lower -n"),
    ("sample-seed-negative", ["sample", "--checkpoint", "run", "--seed", "-1"], "seed must be in"),
    ("sample-seed-float", ["sample", "--checkpoint", "run", "--seed", "1e23"], "invalid int"),
    ("sample-out-folder-is-a-file", ["sample", "--checkpoint", "run", "--out", "notes.txt/"], "is a file"),
    ("sample-out-folder-has-samples", ["sample", "--checkpoint", "run", "--out", "sampled"], "already holds samples"),
    ("sample-out-folder-unwritable", ["sample", "--checkpoint", "run", "--out", "/proc/samples/"], "cannot write"),
    ("sample-out-suffix", ["sample", "--checkpoint", "run", "--out", "s.gif"], "unknown suffix"),
    ("sample-out-no-folder", ["sample", "--checkpoint", "run", "--out", "nosuch/s.png"], "does not exist"),
    ("sample-out-unwritable", ["sample", "--checkpoint", "run", "--out", "/proc/s.png"], "cannot write"),
    ("sample-garbage", ["sample", "--checkpoint", "garbage"], "corrupt"),
    ("sample-bit-flip", ["sample", "--checkpoint", "flipped"], "corrupt"),
    ("sample-missing-key", ["sample", "--checkpoint", "missing_key"], "incomplete"),
    ("sample-wrong-shape", ["sample", "--checkpoint", "bad_shape"], "incomplete"),
    ("sample-nan-weights", ["sample", "--checkpoint", "nan_weights"], "NaN"),
    ("sample-device-cuda", ["sample", "--checkpoint", "run", "--device", "cuda"], "CUDA"),
    ("sample-device-mps", ["sample", "--checkpoint", "run", "--device", "mps"], "MPS"),
    # evaluate
    ("evaluate-missing", ["evaluate", "--checkpoint", "nosuch"], "not found"),
    ("evaluate-split", ["evaluate", "--checkpoint", "run", "--split", "nope"], "unknown split"),
    ("evaluate-rgb", ["evaluate", "--checkpoint", "run", "--data", "rgb.npy"], "model makes"),
    ("evaluate-resolution", ["evaluate", "--checkpoint", "run", "--data", "d16.npy"], "model makes"),
    ("evaluate-num-1", ["evaluate", "--checkpoint", "run", "--num", "1"], "num must be >= 2, got 1"),
    ("evaluate-lost-data", ["evaluate", "--checkpoint", "lost_data"], "does not exist"),
    ("evaluate-out-file", ["evaluate", "--checkpoint", "run", "--out", "notes.txt"], "is a file"),
    ("evaluate-corrupt", ["evaluate", "--checkpoint", "flipped"], "corrupt"),
    ("evaluate-device-mps", ["evaluate", "--checkpoint", "run", "--device", "mps"], "MPS"),
    # issue 23: configs
    ("config-corrupt", ["train", "--config", "corrupt.json"], "cannot read corrupt.json"),
    ("config-nested", ["train", "--config", "nested.json"], "nested too deeply"),
    ("resume-config-corrupt", ["train", "--resume", "bad_config"], "cannot read bad_config/config.json"),
    ("evaluate-config-corrupt", ["evaluate", "--checkpoint", "bad_config"], "cannot read bad_config/config.json"),
    ("config-and-flag-width", ["train", "--config", "run", "--width", "1000000000", "--out", "new"], "width must be in"),
    ("augment-trailing-comma", [*T, "--augment", "hflip,", "--out", "new"], "empty name"),
    ("augment-double-comma", [*T, "--augment", "hflip,,shift", "--out", "new"], "empty name"),
    ("augment-lone-comma", [*T, "--augment", ",", "--out", "new"], "empty name"),
    # resume
    ("resume-empty-string", ["train", "--resume", ""], "cannot resume"),
    ("resume-foreign-checkpoint", ["train", "--resume", "foreign"], "holds a vae model"),
    ("resume-locked", ["train", "--resume", "locked"], "being written by process"),
    ("train-locked", [*T, "--out", "newlock"], "being written by process"),
    # symlinks
    ("out-symlink-to-run", [*T, "--out", "link", "--overwrite"], "symbolic link"),
    ("out-symlink-no-overwrite", [*T, "--out", "link"], "symbolic link"),
    ("out-dangling-symlink", [*T, "--out", "dangling"], "symbolic link"),
    # sample and evaluate
    ("sample-npy-beside-is-dir", ["sample", "--checkpoint", "run", "--out", "sdir.png"], "sdir.npy is a directory"),
    ("sample-npy-is-dir", ["sample", "--checkpoint", "run", "--out", "sdir.npy"], "is a directory"),
    ("sample-label-vae", ["sample", "--checkpoint", "foreign/model.pt", "--label", "3"], "keeps no class labels"),
    ("evaluate-seed-negative", ["evaluate", "--checkpoint", "run", "--seed", "-1"], "seed must be in"),
    ("evaluate-seed-huge", ["evaluate", "--checkpoint", "run", "--seed", "99999999999"], "seed must be in"),
    ("evaluate-n-huge", ["evaluate", "--checkpoint", "run", "-n", "1000000000000"], "lower -n"),
    ("evaluate-n-synthetic-huge", ["evaluate", "--checkpoint", "run", "--n-synthetic", "1000000000000"], "--n-synthetic"),
    # hidden folders are not data
    ("data-only-hidden-folders", [*T, "--data", "hidden_only", "--out", "new"], "hidden_only is empty"),
    ("data-only-hidden-folders-kind", [*T, "--data", "folder:hidden_only", "--out", "new"], "hidden_only is empty"),
    # encode
    ("encode-gan", ["encode", "--checkpoint", "gan"], "has no codes"),
    ("encode-out-suffix", ["encode", "--checkpoint", "run", "--out", "codes.txt"], ".csv or .npy"),
    ("encode-out-dir", ["encode", "--checkpoint", "run", "--out", "empty"], ".csv or .npy"),
    ("encode-out-no-folder", ["encode", "--checkpoint", "run", "--out", "nosuch/codes.csv"], "does not exist"),
    ("encode-refine-negative", ["encode", "--checkpoint", "run", "--refine-steps", "-1"], "refine-steps must be >= 0"),
    ("encode-resolution", ["encode", "--checkpoint", "run", "--data", "d16.npy"], "model makes"),
    ("encode-split", ["encode", "--checkpoint", "run", "--split", "nope"], "unknown split"),
    ("encode-corrupt", ["encode", "--checkpoint", "flipped"], "corrupt"),
    # export
    ("export-format-unknown", ["export", "--checkpoint", "run", "--format", "pickle"], "unknown export format"),
    ("export-out-dir", ["export", "--checkpoint", "run", "--format", "torchscript", "--out", "empty"], "is a directory"),
    ("export-out-no-folder", ["export", "--checkpoint", "run", "--format", "torchscript", "--out", "nosuch/g.pt"],
     "does not exist"),
    ("export-missing", ["export", "--checkpoint", "nosuch", "--format", "torchscript"], "not found"),
    # logger
    ("logger-unknown", [*T, "--logger", "wandb", "--out", "new"], "invalid choice"),
    # the command itself
    ("no-command", [], "required"),
    ("unknown-command", ["frobnicate"], "invalid choice"),
]


def run_cli(world: Path, argv: list[str], capsys) -> str:
    """Run a command that must fail from inside ``world``: exit 2, one ``error:`` line (returned), no file changed."""
    before = tree(world)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert tree(world) == before
    return err


@pytest.mark.parametrize("argv, words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(world, argv, words, capsys, monkeypatch):
    monkeypatch.chdir(world)
    assert words in run_cli(world, argv, capsys)


@pytest.mark.parametrize("name, section, key", [c[:3] for c in CONFIG_VALUES], ids=[c[0] for c in CONFIG_VALUES])
def test_config_file_values_are_checked_as_flags(world, name, section, key, capsys, monkeypatch):
    monkeypatch.chdir(world)
    err = run_cli(world, ["train", "--config", f"{name}.json"], capsys)
    assert f"{name}.json" in err
    assert ("unknown method" if key == "method" else key.replace("_", "-")) in err


ARCHIVE_CASES = [(kind, fault) for kind in ("npy", "npz", "medmnist")
                 for fault in ("truncated", "crc", "empty", "text", "renamed", "pickled")]


@pytest.mark.parametrize("kind, fault", ARCHIVE_CASES, ids=[f"{k}-{f}" for k, f in ARCHIVE_CASES])
def test_every_archive_reader_refuses_damaged_files(world, kind, fault, capsys, monkeypatch):
    monkeypatch.chdir(world)
    name = f"{kind}-{fault}.{'npy' if kind == 'npy' else 'npz'}"
    err = run_cli(world, [*T, "--data", f"{'medmnist' if kind == 'medmnist' else 'npy'}:{name}", "--out", "new"], capsys)
    assert name in err


DICOM_CASES = [  # (id, files to write: name -> series UID or None for garbage, words); need pydicom
    ("dicom-mixed-series", {"a.dcm": "1.2.3.1", "b.dcm": "1.2.3.2"}, "mixes DICOM series 1.2.3.1 and 1.2.3.2"),
    ("dicom-corrupt", {"a.dcm": "1.2.3.1", "b.dcm": None}, "cannot read DICOM file"),
]


@pytest.mark.parametrize("files, words", [c[1:] for c in DICOM_CASES], ids=[c[0] for c in DICOM_CASES])
def test_cli_bad_dicom(tmp_path, write_dicom, files, words, capsys, monkeypatch):
    for name, series in files.items():
        if series is None:
            (tmp_path / "ct" / name).write_bytes(b"\0truncated")
        else:
            write_dicom(tmp_path / "ct" / name, np.zeros((8, 8), np.uint16), series=series)
    monkeypatch.chdir(tmp_path)
    assert words in run_cli(tmp_path, [*T, "--data", "dicom:ct", "--out", "new"], capsys)


MISSING_EXTRAS = [  # (id, package made unimportable, argv, words)
    ("logger-without-tensorboard", "tensorboard", [*T, "--logger", "tensorboard", "--out", "new"], "pip install tensorboard"),
    ("resume-logger-without-tensorboard", "tensorboard", ["train", "--resume", "run", "--logger", "tensorboard"],
     "pip install tensorboard"),
    ("export-onnx-without-onnx", "onnx", ["export", "--checkpoint", "run", "--format", "onnx"], "pip install onnx"),
    ("export-safetensors-without-it", "safetensors", ["export", "--checkpoint", "run", "--format", "safetensors"],
     "pip install safetensors"),
]


@pytest.mark.parametrize("package, argv, words", [c[1:] for c in MISSING_EXTRAS], ids=[c[0] for c in MISSING_EXTRAS])
def test_cli_without_an_extra(world, package, argv, words, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if the package were not installed
    test_cli_bad_input(world, argv, words, capsys, monkeypatch)


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
    ("assign-batch-above-n", lambda w, m, d: NeuroSQL(assign_batch=9, val_fraction=0).fit(d[0][:8]), "at most 8"),
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
    ("labels-datetime", lambda w, m, d: NeuroSQL(epochs=1).fit(d[0][:8], labels=[datetime.date(2026, 1, i + 1) for i in range(8)]),
     "labels must be integers or names"),
    ("labels-float-nan", lambda w, m, d: NeuroSQL(epochs=1).fit(d[0][:8], labels=[float("nan")] * 8), "labels must be"),
    ("labels-objects", lambda w, m, d: NeuroSQL(epochs=1).fit(d[0][:8], labels=[{}] * 8), "labels must be"),
    ("encode-refine-negative", lambda w, m, d: m.encode(d[0][:2], refine_steps=-1), "refine_steps >= 0"),
    ("encode-refine-float", lambda w, m, d: m.encode(d[0][:2], refine_steps=1.5), "refine-steps must be an integer"),
    ("encode-lr-0", lambda w, m, d: m.encode(d[0][:2], lr=0), "lr > 0"),
    ("vae-encode-refine-negative", lambda w, m, d: VAE.load(w / "foreign").encode(d[0][:2], refine_steps=-1),
     "refine_steps >= 0"),
    ("resume-progress-text", lambda w, m, d: NeuroSQL.resume(w / "run", d[0][:40], progress="no"), "progress"),
    ("load-data-resolution-text", lambda w, m, d: load_data(None, resolution="64"), "resolution must be an integer"),
    ("load-data-spec-int", lambda w, m, d: load_data(5), "spec must be a string"),
    ("load-data-limit-float", lambda w, m, d: load_data(None, limit=2.5), "limit must be an integer"),
    ("load-npz-pickled", lambda w, m, d: load_data(f"npy:{w / 'npz-pickled.npz'}"), "pickled"),
    ("load-npz-renamed", lambda w, m, d: load_data(f"npy:{w / 'npz-renamed.npz'}"), "rename it"),
]


@pytest.mark.parametrize("call, words", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(world, fitted, mnist, call, words):
    before = tree(world)
    with pytest.raises(NeuroSQLError) as info:
        call(world, fitted, mnist)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert tree(world) == before


def test_more_processes_than_image_pairs_are_refused(world, capsys, monkeypatch):
    """As torchrun with 21 processes for the 40 training images would be: rank 0's one line, nothing written."""
    from neurosql.engine.distributed import Shard

    monkeypatch.chdir(world)
    monkeypatch.setattr("neurosql.engine.trainer.init_from_environment", lambda: Shard(0, 21))
    before = tree(world)
    assert main([*T, "--out", "new"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 21 processes need at least 2 training images each, got 40") and err.count("\n") == 1
    assert tree(world) == before
    monkeypatch.setattr("neurosql.engine.trainer.init_from_environment", lambda: Shard(1, 2))
    with pytest.raises(NeuroSQLError, match="assign-batch 19 is larger than the 18 training images per process"):
        NeuroSQL(assign_batch=19, val_fraction=0, epochs=1).fit(torch.rand(36, 1, 16, 16))


def test_catalogue_size():
    assert len(CLI_CASES) + len(API_CASES) + len(CONFIG_VALUES) + len(ARCHIVE_CASES) + len(MISSING_EXTRAS) >= 230
