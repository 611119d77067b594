"""Tests for the MedMNIST loader on small files with the official keys and dtypes."""

import numpy as np
import pytest
import torch

from neurosql.cli import main
from neurosql.data import detect_layout, load_data
from neurosql.errors import NeuroSQLError

SIZES = {"train": 12, "val": 4, "test": 6}


def write_medmnist(path, image_shape, n_classes=3, seed=0, label_columns=1, **override):
    """A .npz like MedMNIST's: uint8 {split}_images (n, *image_shape), uint8 {split}_labels (n, columns)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)
        high = 2 if label_columns > 1 else n_classes
        arrays[f"{split}_labels"] = (np.arange(n * label_columns) % high).reshape(n, label_columns).astype(np.uint8)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("shape, expected", [((28, 28), (1, 28, 28)), ((28, 28, 3), (3, 28, 28)), ((8, 8, 8), (1, 8, 8, 8))])
def test_official_splits_pixels_and_labels(tmp_path, shape, expected):
    path = write_medmnist(tmp_path / "set.npz", shape)
    raw = np.load(path)
    for split, n in SIZES.items():
        d = load_data(f"medmnist:{path}", split, progress=False)
        assert tuple(d.images.shape) == (n, *expected) and d.images.dtype == torch.float32
        channels_first = raw[f"{split}_images"]
        channels_first = channels_first.transpose(0, 3, 1, 2) if shape[-1] == 3 else channels_first[:, None]
        np.testing.assert_allclose(d.images.numpy(), channels_first / 255.0, atol=1e-6)
        np.testing.assert_array_equal(d.labels, raw[f"{split}_labels"][:, 0])
        assert d.ids[0] == f"{split}:0" and d.class_names == ["0", "1", "2"] and d.source.startswith("medmnist:")
    assert len(load_data(f"medmnist:{path}", "all", progress=False)) == sum(SIZES.values())


def test_bare_npz_is_detected_by_its_keys(tmp_path):
    write_medmnist(tmp_path / "organ.npz", (28, 28))
    np.savez(tmp_path / "plain.npz", x=np.zeros((2, 4, 4), np.uint8))
    assert detect_layout(tmp_path / "organ.npz") == "medmnist"
    assert detect_layout(tmp_path / "plain.npz") == "npy"
    assert len(load_data(str(tmp_path / "organ.npz"), "val", progress=False)) == SIZES["val"]


def test_gray_to_rgb_resize_and_stratified_limit(tmp_path):
    path = write_medmnist(tmp_path / "set.npz", (28, 28))
    d = load_data(f"medmnist:{path}", "train", resolution=14, channels=3, progress=False)
    assert tuple(d.images.shape) == (12, 3, 14, 14)
    assert torch.equal(d.images[:, 0], d.images[:, 2])
    small = load_data(f"medmnist:{path}", "train", limit=6, seed=1, progress=False)
    assert np.bincount(small.labels).tolist() == [2, 2, 2]


def test_volumes_shrink_by_block_averages(tmp_path):
    path = write_medmnist(tmp_path / "vol.npz", (32, 32, 32))
    d = load_data(f"medmnist:{path}", "val", resolution=16, progress=False)
    x = np.load(path)["val_images"] / 255.0  # (4, 32, 32, 32)
    blocks = x.reshape(4, 16, 2, 16, 2, 16, 2).mean(axis=(2, 4, 6))  # 2×2×2 means, the exact area resampling
    np.testing.assert_allclose(d.images[:, 0].numpy(), blocks, atol=1e-6)


def test_multi_label_file_loads_without_labels(tmp_path):
    path = write_medmnist(tmp_path / "chest.npz", (28, 28), label_columns=14)
    with pytest.warns(UserWarning, match="multi-label"):
        d = load_data(f"medmnist:{path}", "test", progress=False)
    assert d.labels is None and len(d) == SIZES["test"]


@pytest.mark.parametrize(
    "image_shape, override, kwargs, message",
    [
        ((28, 28), {"val_labels": None}, {}, "lacks the key\\(s\\) val_labels"),
        ((28, 28), {"train_labels": np.zeros((5, 1), np.uint8)}, {}, "5 labels for 12 images"),
        ((8, 8, 8), {}, {"resolution": 128}, "3-D volumes .* resolution 128"),
        ((8, 8, 8), {}, {"channels": 3}, "gray 3-D volumes"),
        ((28, 28), {"train_images": np.zeros((12, 28, 28), np.float32)}, {}, "float32"),
        ((28, 20), {}, {}, "square sides"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, image_shape, override, kwargs, message):
    path = write_medmnist(tmp_path / "bad.npz", image_shape, **override)
    with pytest.raises(NeuroSQLError, match=message) as info:
        load_data(f"medmnist:{path}", "train", progress=False, **kwargs)
    assert "\n" not in str(info.value)


def test_cli_bad_medmnist_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write_medmnist(tmp_path / "bad.npz", (28, 28), test_images=None)
    out = tmp_path / "run"
    assert main(["train", "--data", f"medmnist:{path}", "--out", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "test_images" in err
    assert not out.exists() or not any(out.iterdir())
