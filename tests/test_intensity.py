"""Tests for neurosql.data.intensity and the formats without a fixed range: 16-bit and float
images, TIFF, fixed windows, padding to a square; every file is built here with known values."""

import json

import numpy as np
import pytest
from PIL import Image

from neurosql.cli import main
from neurosql.data import load_data
from neurosql.data.intensity import STORED_RULE, check_window, intensity_rule, scale_intensity
from neurosql.errors import NeuroSQLError


def twelve_bit_ramp() -> np.ndarray:
    """0..4095 once each, as a 64 x 64 uint16 image: the 12-bit data of a CT/MR export."""
    return np.arange(4096, dtype=np.uint16).reshape(64, 64)


def test_percentiles_of_a_ramp_by_hand():
    # 0.5th and 99.5th percentiles of 0..4095 (numpy's linear rule): 0.005·4095 and 0.995·4095
    lo, hi = 20.475, 4074.525
    out = scale_intensity(twelve_bit_ramp())
    assert out.min() == 0 and out.max() == 1
    assert out.flat[2048] == pytest.approx((2048 - lo) / (hi - lo), abs=1e-6)  # 0.50012
    assert out.flat[20] == 0 and out.flat[4075] == 1  # clipped outside the window


def test_fixed_window_and_constant_images():
    x = np.array([[-2000.0, -1000.0, -300.0, 400.0, 3000.0]])
    np.testing.assert_allclose(scale_intensity(x, (-1000, 400)), [[0, 0, 0.5, 1, 1]], atol=1e-7)
    assert not scale_intensity(np.full((4, 4), 7.0)).any()


@pytest.mark.parametrize("text", ["1", "a,b", "5,5", "400,-1000", "nan,1", "1,inf"])
def test_bad_windows_are_refused(text):
    with pytest.raises(NeuroSQLError, match="--window"):
        check_window(text)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_12_bit_data_in_a_16_bit_file_span_the_range(tmp_path, suffix):
    (tmp_path / "d").mkdir()
    ramp = twelve_bit_ramp()
    for i in range(3):
        Image.fromarray(ramp).save(tmp_path / "d" / f"{i}{suffix}")
    assert Image.open(tmp_path / "d" / f"0{suffix}").mode in ("I", "I;16")  # 16-bit gray
    x = load_data(f"folder:{tmp_path / 'd'}", "all", progress=False).images  # (3, 1, 64, 64)
    assert x.shape == (3, 1, 64, 64)
    np.testing.assert_array_equal(x[0, 0].numpy(), scale_intensity(ramp))
    assert x.min() == 0 and x.max() == 1  # dividing by 65535 gave at most 4095/65535 = 0.062
    windowed = load_data(f"folder:{tmp_path / 'd'}", "all", progress=False, window=(0, 4095)).images
    np.testing.assert_allclose(windowed[0, 0].numpy(), ramp / 4095.0, atol=1e-6)


def test_float_tiff_and_8_bit_tiff(tmp_path):
    (tmp_path / "f").mkdir()
    values = np.linspace(-3.0, 5.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    for i in range(3):
        Image.fromarray(values).save(tmp_path / "f" / f"{i}.tiff")
        Image.fromarray((np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)).save(tmp_path / "f" / f"g{i}.tif")
    data = load_data(f"folder:{tmp_path / 'f'}", "all", progress=False)
    by_id = dict(zip(data.ids, data.images[:, 0].numpy()))
    assert by_id["0.tiff"].min() == 0 and by_id["0.tiff"].max() == 1
    np.testing.assert_array_equal(by_id["0.tiff"], scale_intensity(values))
    np.testing.assert_array_equal(by_id["g0.tif"].ravel(), (np.arange(32 * 32) % 256).astype(np.float32) / 255.0)  # 8-bit


def test_multi_page_tiff_is_refused(tmp_path):
    (tmp_path / "s").mkdir()
    pages = [Image.fromarray(np.full((8, 8), 40 * i, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "s" / "stack.tif", save_all=True, append_images=pages[1:])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "s" / "one.png")
    with pytest.raises(NeuroSQLError, match="3 pages") as info:
        load_data(f"folder:{tmp_path / 's'}", "all", progress=False)
    assert "\n" not in str(info.value)


def test_pad_square_keeps_the_whole_image(tmp_path):
    (tmp_path / "w").mkdir()
    wide = np.zeros((10, 20), np.uint8)
    wide[:, 0] = wide[:, -1] = 255  # white left and right edges: a centre crop cuts both off
    for i in range(3):
        Image.fromarray(wide).save(tmp_path / "w" / f"{i}.png")
    cropped = load_data(f"folder:{tmp_path / 'w'}", "all", progress=False).images
    padded = load_data(f"folder:{tmp_path / 'w'}", "all", progress=False, pad_square=True).images
    assert cropped.shape[-1] == 10 and cropped.max() == 0
    expected = np.zeros((20, 20), np.float32)
    expected[5:15] = wide / 255.0  # 5 black rows above and below
    np.testing.assert_array_equal(padded[0, 0].numpy(), expected)


def test_window_and_padding_reach_the_run_and_are_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 4096, (10, 16)).astype(np.uint16)).save(tmp_path / "d" / f"{i}.png")
    argv = ["train", "--data", "folder:d", "--window", "-100,4095", "--pad-square",
            "--epochs", "1", "--latent-dim", "2", "--width", "8", "--no-progress", "--device", "cpu", "--no-evaluate"]
    assert main([*argv, "--out", "run"]) == 0
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data["options"] == {"window": [-100.0, 4095.0], "pad_square": True}
    assert data["intensity"] == "fixed window [-100, 4095] -> [0, 1], clipped"


def test_recorded_rules():
    assert intensity_rule("folder").startswith("8-bit images / 255; 16-bit, 32-bit and float images: per-image [0.5, 99.5]")
    assert intensity_rule("dicom", (-1000, 400)).endswith("fixed window [-1000, 400] -> [0, 1], clipped")
    assert intensity_rule("npy", (0, 1)) == intensity_rule("mnist5k") == STORED_RULE  # no window there


def test_window_reaches_nifti_volumes_and_padding_is_refused_for_them(tmp_path):
    import nibabel as nib

    volume = np.zeros((6, 6, 4), np.float32)
    volume[1:5, 1:5, :] = np.arange(16, dtype=np.float32).reshape(4, 4)[..., None] * 100  # 0..1500
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    x = load_data(f"nifti:{tmp_path / 'v.nii.gz'}", "all", window=(0, 1000), progress=False).images
    assert x.shape == (4, 1, 6, 6)
    expected = np.rot90(np.clip(volume[:, :, 0] / 1000, 0, 1))  # slices are rotated so that anterior is up
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-6)
    with pytest.raises(NeuroSQLError, match="--pad-square applies to 2-D slices"):
        load_data(f"nifti:{tmp_path / 'v.nii.gz'}", "all", volumes=True, pad_square=True, progress=False)
