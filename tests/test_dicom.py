"""Tests for neurosql.data.dicom on DICOM files written here by pydicom with known pixels,
rescale slope and intercept (the ``write_dicom`` fixture: skipped without the ``dicom`` extra)."""

import numpy as np
import pytest

from neurosql.data import detect_layout, load_data
from neurosql.data.splits import seeded_split
from neurosql.errors import NeuroSQLError

# stored values chosen so that HU = value - 1024 lands on the window's edges and middle
STORED = np.array([[0, 24, 724, 1424, 3000, 1024]], dtype=np.uint16).repeat(6, axis=0)  # (6, 6)


def test_hu_window_matches_a_hand_computation(tmp_path, write_dicom):
    for i in range(3):
        write_dicom(tmp_path / "ct" / f"{i}.dcm", STORED)
    x = load_data(f"dicom:{tmp_path / 'ct'}", "all", window=(-1000, 400), progress=False).images
    # HU -1024, -1000, -300, 400, 1976, 0 -> (HU + 1000) / 1400 clipped to [0, 1]
    expected = [0.0, 0.0, 700 / 1400, 1.0, 1.0, 1000 / 1400]
    assert x.shape == (3, 1, 6, 6)
    np.testing.assert_allclose(x[0, 0, 0].numpy(), expected, atol=1e-6)


def test_slope_is_applied_before_the_window(tmp_path, write_dicom):
    for i in range(3):
        write_dicom(tmp_path / "ct" / f"{i}.dcm", STORED, slope=2.0, intercept=-2048.0)
    x = load_data(f"dicom:{tmp_path / 'ct'}", "all", window=(-1000, 400), progress=False).images
    # HU = 2·value - 2048: -2048, -2000, -600, 800, 3952, 0
    np.testing.assert_allclose(x[0, 0, 0].numpy(), [0, 0, 400 / 1400, 1, 1, 1000 / 1400], atol=1e-6)


def test_default_percentiles_span_the_range_and_monochrome1_is_inverted(tmp_path, write_dicom):
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    for i in range(3):
        write_dicom(tmp_path / "a" / f"{i}.dcm", ramp)
        write_dicom(tmp_path / "b" / f"{i}.dcm", ramp, photometric="MONOCHROME1", series="1.2.3.2")
    data = load_data(f"dicom:{tmp_path}", "all", progress=False)
    by_id = dict(zip(data.ids, data.images[:, 0].numpy()))
    lo, hi = 20.475 - 1024, 4074.525 - 1024  # 0.5th and 99.5th percentiles of HU -1024..3071
    a = by_id["a/0.dcm"]
    assert a.min() == 0 and a.max() == 1
    assert a.flat[2048] == pytest.approx((2048 - 1024 - lo) / (hi - lo), abs=1e-6)
    np.testing.assert_allclose(by_id["b/0.dcm"], 1 - a, atol=1e-6)


def test_split_is_by_patient_and_the_layout_is_detected(tmp_path, write_dicom):
    patients = [f"P{p}" for p in range(10)]
    for p, patient in enumerate(patients):
        for s in range(3):
            write_dicom(tmp_path / patient / f"{s}.dcm", STORED + p, patient=patient, series=f"1.2.{p}")
    assert detect_layout(tmp_path) == "dicom"
    spans = {}
    for split in ("train", "val", "test"):
        for i in load_data(str(tmp_path), split, progress=False).ids:
            spans.setdefault(i.split("/")[0], set()).add(split)
    assert len(spans) == 10 and all(len(s) == 1 for s in spans.values())  # every patient in one split only
    counts = {s: sum(v == {s} for v in spans.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 8, "val": 1, "test": 1}
    expected = seeded_split(30, groups=[p for p in patients for _ in range(3)])  # the same rule as OASIS
    assert {p: {expected[3 * i]} for i, p in enumerate(patients)} == spans


def test_pad_square_and_limit(tmp_path, write_dicom):
    for i in range(4):
        write_dicom(tmp_path / "ct" / f"{i}.dcm", np.full((4, 8), 1424, np.uint16))
    x = load_data(f"dicom:{tmp_path / 'ct'}", "all", window=(-1000, 400), pad_square=True, limit=2,
                  progress=False).images
    assert x.shape == (2, 1, 8, 8)
    assert x[0, 0, 2:6].min() == 1 and x[0, 0, :2].max() == 0 and x[0, 0, 6:].max() == 0


def test_mixed_series_and_corrupt_files_are_refused(tmp_path, write_dicom):
    write_dicom(tmp_path / "mixed" / "0.dcm", STORED, series="1.2.3.1")
    write_dicom(tmp_path / "mixed" / "1.dcm", STORED, series="1.2.3.9")
    with pytest.raises(NeuroSQLError, match="mixes DICOM series 1.2.3.1 and 1.2.3.9"):
        load_data(f"dicom:{tmp_path / 'mixed'}", "all", progress=False)
    write_dicom(tmp_path / "bad" / "0.dcm", STORED)
    (tmp_path / "bad" / "1.dcm").write_bytes(b"\0not a dicom file")
    with pytest.raises(NeuroSQLError, match="cannot read DICOM file") as info:
        load_data(f"dicom:{tmp_path / 'bad'}", "all", progress=False)
    assert "\n" not in str(info.value)


def test_without_pydicom_the_error_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "0.dcm").write_bytes(b"\0")
    monkeypatch.setitem(__import__("sys").modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(NeuroSQLError, match=r"pip install 'neurosql\[dicom\]'"):
        load_data(f"dicom:{tmp_path}", "all", progress=False)
