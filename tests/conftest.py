"""Shared fixtures: small real MNIST digits and CPU-only, two-thread torch."""

import os

# Idle OpenMP threads must sleep, not spin: spinning starves the other core on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mnist():
    """All 5,000 embedded real MNIST digits as (n, 1, 28, 28) floats in [0, 1], with labels,
    read from the package's file directly (not through the loader under test)."""
    from importlib import resources

    with resources.files("neurosql.data").joinpath("mnist5k.npz").open("rb") as f, np.load(f) as arrays:
        X, y = arrays["images"].astype(np.float64), arrays["labels"]
    return torch.from_numpy((X / 255.0).astype(np.float32)).view(-1, 1, 28, 28), y.astype(np.int64)


@pytest.fixture(scope="session")
def digits(mnist):
    """48 digits, balanced over the ten classes."""
    X, y = mnist
    idx = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(10)])[:48]
    return X[idx]


@pytest.fixture(scope="session")
def write_dicom():
    """A function writing a CT slice with stored values ``pixels`` (H, W) uint16, HU = slope ·
    value + intercept, built from scratch by pydicom; skips the test without the dicom extra."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    def write(path, pixels, *, slope=1.0, intercept=-1024.0, patient="P1", series="1.2.3.1",
              photometric="MONOCHROME2"):
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.SeriesInstanceUID, ds.Modality = patient, series, "CT"
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.set_pixel_data(np.asarray(pixels, dtype=np.uint16), photometric, 12)
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
