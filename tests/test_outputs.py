"""Outputs for other tools: the codes of a folder of images, a folder of samples, the exported generator."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from neurosql.cli import main
from neurosql.methods import load_model
from neurosql.runs import load_run_data

TINY = ["--limit", "40", "--epochs", "3", "--latent-dim", "2", "--width", "8", "--no-progress", "--no-evaluate",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory, mnist):
    """60 digits as PNGs in one folder per class: a folder: data set with labels and file ids."""
    X, y = mnist
    root = tmp_path_factory.mktemp("digits") / "digits"
    for i in np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)]):  # the digits are sorted by class
        (root / str(y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray((X[i, 0].numpy() * 255).round().astype(np.uint8)).save(root / str(y[i]) / f"d{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_folder):
    """A NeuroSQL and a VAE run on the folder."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--data", f"folder:{digits_folder}", "--out", str(out / "neurosql"), *TINY,
                 "--assign-every", "1"]) == 0
    assert main(["train", "--method", "vae", "--data", f"folder:{digits_folder}", "--out", str(out / "vae"), *TINY]) == 0
    return out


def read_codes_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    codes = np.array([[float(r[k]) for k in r if k.startswith("z")] for r in rows], dtype=np.float32)
    return rows, codes


@pytest.mark.parametrize("method", ["neurosql", "vae"])
def test_encode_gives_the_stored_codes_of_training_images(runs, digits_folder, method, tmp_path):
    run = runs / method
    assert main(["encode", "--checkpoint", str(run), "--data", f"folder:{digits_folder}",
                 "--out", str(tmp_path / "codes.csv")]) == 0
    rows, codes = read_codes_csv(tmp_path / "codes.csv")
    model = load_model(run, device="cpu")
    train = load_run_data(run, "train", progress=False)  # the images as the run saw them, train_index_ order below
    trained_ids = [train.ids[i] for i in model.train_index_]
    by_id = {r["id"]: (r, code) for r, code in zip(rows, codes)}
    assert len(rows) == 60 and {r["label"] for r in rows} == {str(v) for v in range(10)}
    assert {i for i, r in enumerate(rows) if r["source"] == "stored"} == {i for i, r in enumerate(rows) if r["id"] in trained_ids}
    stored = np.stack([by_id[i][1] for i in trained_ids])
    np.testing.assert_allclose(stored, model.codes_.numpy(), atol=1e-6)
    others = [r["id"] for r in rows if r["id"] not in trained_ids]
    assert others and all(by_id[i][0]["source"] == "encoded" for i in others)
    everything = load_run_data(run, "all", progress=False)
    images = everything.images[[everything.ids.index(i) for i in others]]
    np.testing.assert_allclose(np.stack([by_id[i][1] for i in others]), model.encode(images).numpy(), atol=1e-6)
    if method == "neurosql":  # momentum-averaged codes are not lattice points, encoded ones are
        lattice = model.lattice_.points
        nearest = lambda z: torch.cdist(torch.as_tensor(z), lattice).min(dim=1).values
        assert bool((nearest(stored) > 1e-4).any()) and bool((nearest(codes[[r["id"] in others for r in rows]]) < 1e-6).all())
    assert main(["encode", "--checkpoint", str(run), "--data", f"folder:{digits_folder}",
                 "--out", str(tmp_path / "codes.npy")]) == 0
    table = np.load(tmp_path / "codes.npy")  # a structured array, no pickle
    assert table["id"].tolist() == [r["id"] for r in rows] and table["source"].tolist() == [r["source"] for r in rows]
    np.testing.assert_allclose(table["code"], codes, atol=1e-6)


def test_sample_into_a_folder_writes_one_png_per_image(runs, tmp_path):
    run = str(runs / "neurosql")
    assert main(["sample", "--checkpoint", run, "-n", "5", "--seed", "3", "--out", str(tmp_path / "grid.npy")]) == 0
    assert main(["sample", "--checkpoint", run, "-n", "5", "--seed", "3", "--out", str(tmp_path / "new") + "/"]) == 0
    samples = np.load(tmp_path / "new" / "samples.npy")
    assert np.array_equal(samples, np.load(tmp_path / "grid.npy"))
    pngs = sorted((tmp_path / "new").glob("*.png"))
    assert [p.name for p in pngs] == [f"sample_{i:04d}.png" for i in range(5)]
    for png, image in zip(pngs, samples):
        assert np.array_equal(np.asarray(Image.open(png)), (image[0] * 255).round().astype(np.uint8))
    (tmp_path / "existing").mkdir()  # an existing directory is a folder too, without the slash
    assert main(["sample", "--checkpoint", run, "-n", "2", "--out", str(tmp_path / "existing")]) == 0
    assert len(list((tmp_path / "existing").glob("*.png"))) == 2


@pytest.mark.parametrize("method", ["neurosql", "vae"])
def test_exported_generators_give_the_same_images(runs, method, tmp_path):
    from neurosql.export import load_safetensors

    run = runs / method
    model = load_model(run, device="cpu")
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    expected = model.decode(z)
    assert main(["export", "--checkpoint", str(run), "--format", "torchscript", "--out", str(tmp_path / "g.pt")]) == 0
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "g.pt"))(z), expected, atol=1e-6, rtol=0)
    pytest.importorskip("safetensors")
    assert main(["export", "--checkpoint", str(run), "--format", "safetensors"]) == 0  # default: RUN/generator.safetensors
    with torch.no_grad():
        torch.testing.assert_close(load_safetensors(run / "generator.safetensors")(z), expected, atol=1e-6, rtol=0)


def test_onnx_export_gives_the_same_images(runs, tmp_path):
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator  # the onnx package's own runtime: an independent implementation

    model = load_model(runs / "neurosql", device="cpu")
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(1))  # another batch size than the traced one
    assert main(["export", "--checkpoint", str(runs / "neurosql"), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 0
    (images,) = ReferenceEvaluator(str(tmp_path / "g.onnx")).run(None, {"z": z.numpy()})
    np.testing.assert_allclose(images, model.decode(z).numpy(), atol=1e-5)


def test_a_method_without_a_generator_is_not_exported():
    from types import SimpleNamespace

    from neurosql.errors import NeuroSQLError
    from neurosql.export import exportable_generator

    ddpm = SimpleNamespace(kind="ddpm", networks_={"denoiser": torch.nn.Identity()})  # what a DDPM run holds
    with pytest.raises(NeuroSQLError, match="no generator"):
        exportable_generator(ddpm)
