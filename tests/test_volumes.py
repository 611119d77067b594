"""3-D volumes end to end: generator shapes, 5-D .npy data, mid-slice grids, NeuroSQL on volumes."""

import json

import numpy as np
import pytest
import torch

from neurosql import NeuroSQL
from neurosql.core import losses3d
from neurosql.cli import main
from neurosql.data import load_data
from neurosql.data.preprocess import MIN_VOLUME_SIDE
from neurosql.errors import NeuroSQLError
from neurosql.core.generators import build_generator
from neurosql.report import mid_slices
from neurosql.runs import load_run_data


@pytest.mark.parametrize("side", [16, 28, 32, 64])
def test_volume_generator_shapes_and_rebuild(side):
    g = build_generator("convnet", 4, resolution=side, channels=1, width=8, volume=True).eval()
    z = torch.randn(2, 4)
    with torch.no_grad():
        out = g(z)
    assert out.shape == (2, 1, side, side, side) and 0 < float(out.min()) and float(out.max()) < 1
    again = build_generator(**g.config).eval()
    again.load_state_dict(g.state_dict())
    with torch.no_grad():
        assert torch.equal(again(z), out)


def test_volume_generator_errors():
    with pytest.raises(NeuroSQLError, match="'unet' has no 3-D version"):
        build_generator("unet", 4, resolution=16, volume=True)
    with pytest.raises(NeuroSQLError, match="cannot produce 20x20 images"):
        build_generator("convnet", 4, resolution=20, volume=True)


def test_mid_slices_show_the_three_middle_planes():
    v = torch.zeros(1, 1, 8, 8, 8)
    v[0, 0, 4, 1, 2] = 1.0  # on the axial mid plane (D = 4), at (H, W) = (1, 2)
    v[0, 0, 6, 4, 3] = 0.5  # on the coronal mid plane (H = 4), at (D, W) = (6, 3)
    v[0, 0, 5, 7, 4] = 0.25  # on the sagittal mid plane (W = 4), at (D, H) = (5, 7); also on no other mid plane
    out = mid_slices(v, gap=1)[0, 0]  # (8, 26)
    assert out.shape == (8, 26)
    assert out[1, 2] == 1.0 and out[6, 9 + 3] == 0.5 and out[5, 18 + 7] == 0.25
    assert torch.all(out[:, 8] == 1) and torch.all(out[:, 17] == 1)  # white gaps
    assert MIN_VOLUME_SIDE == losses3d.WINDOW


def test_npy_volumes_load_resample_and_reject(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (10, 1, 16, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "v.npz", x=x, y=np.arange(10) % 2)
    d = load_data(f"npy:{tmp_path / 'v.npz'}", "all", progress=False)
    assert d.images.shape == (10, 1, 16, 16, 16) and d.labels.tolist() == (np.arange(10) % 2).tolist()
    np.testing.assert_allclose(d.images.numpy(), x / 255.0, atol=1e-6)
    half = load_data(f"npy:{tmp_path / 'v.npz'}", "all", resolution=8, progress=False)
    np.testing.assert_allclose(half.images.numpy(), (x / 255.0).reshape(10, 1, 8, 2, 8, 2, 8, 2).mean((3, 5, 7)), atol=1e-6)
    np.save(tmp_path / "flat.npy", np.zeros((4, 1, 16, 16, 8), np.uint8))
    with pytest.raises(NeuroSQLError, match="cubes"):
        load_data(f"npy:{tmp_path / 'flat.npy'}", progress=False)
    with pytest.raises(NeuroSQLError, match="smaller than the 7³ SSIM window"):
        load_data(f"npy:{tmp_path / 'v.npz'}", resolution=4, progress=False)


def ellipsoids(n, side=16, seed=0):
    """Bright ellipsoids of random centre and radii in dark volumes, (n, 1, side, side, side)."""
    rng = np.random.default_rng(seed)
    t = (np.arange(side) + 0.5) / side - 0.5
    d, h, w = np.meshgrid(t, t, t, indexing="ij")
    out = np.zeros((n, 1, side, side, side), np.float32)
    for i in range(n):
        c, r = rng.uniform(-0.1, 0.1, 3), rng.uniform(0.2, 0.4, 3)
        out[i, 0] = (((d - c[0]) / r[0]) ** 2 + ((h - c[1]) / r[1]) ** 2 + ((w - c[2]) / r[2]) ** 2 <= 1) * 0.9
    return out


def test_neurosql_fits_volumes_and_cli_writes_the_run(tmp_path):
    X = ellipsoids(24)
    model = NeuroSQL(latent_dim=3, epochs=2, assign_every=1, width=8, batch_size=8, progress=False).fit(X)
    assert model.sample(3, seed=0).shape == (3, 1, 16, 16, 16)
    assert model.generator_.config["volume"] is True
    loaded = NeuroSQL.load(model.save(tmp_path / "m.pt"))
    assert torch.equal(loaded.sample(3, seed=0), model.sample(3, seed=0))
    np.save(tmp_path / "heads.npy", X)
    out = tmp_path / "run"
    args = ["train", "--data", f"npy:{tmp_path / 'heads.npy'}", "--out", str(out), "--epochs", "1",
            "--latent-dim", "3", "--width", "8", "--no-progress"]
    assert main(args) == 0
    assert (out / "samples.png").is_file() and (out / "reconstructions.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())  # the end of train evaluates volumes too
    assert metrics["pfid_3d"] >= 0 and -1 <= metrics["recon_ssim_3d"] <= 1 and metrics["n_recon"] >= 1
    assert metrics["memorisation_ratio"] > 0 and (out / "nearest.png").is_file()  # copies checked in 3-D too


def test_evaluate_reports_the_3d_metrics_of_a_volume_run(tmp_path):
    """``evaluate`` on a volume run: recon_ssim_3d is scikit-image's 3-D SSIM of the held-out volumes and
    their reconstructions; pfid_3d is the proxy-FID of samples against them."""
    from skimage.metrics import structural_similarity

    from neurosql.methods import load_model
    from neurosql.metrics.fid import proxy_fid_3d

    np.save(tmp_path / "heads.npy", ellipsoids(40))
    out = tmp_path / "run"
    assert main(["train", "--data", f"npy:{tmp_path / 'heads.npy'}", "--out", str(out), "--epochs", "1",
                 "--latent-dim", "3", "--width", "8", "--no-progress", "--no-evaluate"]) == 0
    assert main(["evaluate", "--checkpoint", str(out), "-n", "8"]) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    model, test = load_model(out, device="cpu"), load_run_data(out, "test", progress=False).images
    recon = model.reconstruct(test)
    reference = np.mean([structural_similarity(a[0].numpy(), b[0].numpy(), gaussian_weights=True, sigma=0.9,
                                               use_sample_covariance=False, data_range=1) for a, b in zip(test, recon)])
    assert metrics["recon_ssim_3d"] == pytest.approx(reference, abs=1e-4) and metrics["n_recon"] == len(test)
    assert metrics["pfid_3d"] == pytest.approx(proxy_fid_3d(test, model.sample(len(test), seed=0)), rel=1e-6)
    assert "pfid_3d" in (out / "eval" / "report.md").read_text()


def test_the_vae_trains_on_volumes_with_the_same_3d_decoder(tmp_path):
    """The VAE baseline on volumes: the 3-D ConvNet as decoder, its pixel-MLP encoder on the voxels."""
    from neurosql.methods import VAE

    X = ellipsoids(24)
    vae = VAE(latent_dim=3, epochs=2, width=8, batch_size=8, encoder_hidden=16, progress=False).fit(X)
    assert vae.generator_.config["volume"] is True and vae.sample(2, seed=0).shape == (2, 1, 16, 16, 16)
    assert vae.reconstruct().shape == (len(vae.train_index_), 1, 16, 16, 16)
    np.save(tmp_path / "heads.npy", X)
    out = tmp_path / "vae"
    assert main(["train", "--method", "vae", "--data", f"npy:{tmp_path / 'heads.npy'}", "--out", str(out),
                 "--epochs", "1", "--latent-dim", "3", "--width", "8", "--no-progress", "--no-evaluate"]) == 0
    assert (out / "samples.png").is_file() and (out / "reconstructions.png").is_file()
    assert main(["train", "--method", "gan", "--data", f"npy:{tmp_path / 'heads.npy'}", "--out", str(tmp_path / "gan"),
                 "--epochs", "1", "--no-progress"]) == 2  # no 3-D discriminator: refused before anything is written
    assert not (tmp_path / "gan").exists()


def _nifti_heads(folder, count: int = 12):
    """``count`` 3-D NIfTI files (24 × 20 × 18 voxels of 2 mm, an offset origin) of an ellipsoid head
    on a zero background, and one 4-D series."""
    import nibabel as nib

    folder.mkdir()
    affine = np.array([[2.0, 0, 0, -20], [0, 2.0, 0, -30], [0, 0, 2.0, 10], [0, 0, 0, 1]])
    grid = np.mgrid[:24, :20, :18].astype(np.float32)
    rng = np.random.default_rng(0)
    for i in range(count):
        radii = rng.uniform(5, 7, 3)
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, (12, 10, 9), radii)) <= 1
        nib.save(nib.Nifti1Image((inside * rng.uniform(100, 200)).astype(np.float32), affine), folder / f"s{i:02d}.nii.gz")
    return affine


def test_nifti_volumes_load_cropped_cubic_with_their_world_affine(tmp_path):
    import nibabel as nib

    from neurosql.data import load_data

    affine = _nifti_heads(tmp_path / "heads")
    data = load_data(f"nifti:{tmp_path / 'heads'}", "train", resolution=16, volumes=True, progress=False)
    assert data.images.shape[1:] == (1, 16, 16, 16) and 8 <= len(data) <= 10
    assert data.images.min() >= 0 and data.images.max() == 1
    # the cube is centred on the head's bounding box: its middle voxel maps to the box's centre in mm
    first = nib.load(tmp_path / "heads" / data.ids[0])
    found = np.argwhere(np.asanyarray(first.dataobj) > 0)
    centre = (found.min(0) + found.max(0)) / 2
    assert np.allclose((data.affine @ [7.5, 7.5, 7.5, 1])[:3], (affine @ [*centre, 1])[:3], atol=1e-6)
    assert np.allclose(np.abs(np.linalg.det(data.affine[:3, :3])) ** (1 / 3), 2.0 * (found.max(0) - found.min(0) + 1).max() / 16)
    series = np.zeros((8, 8, 8, 3), np.float32)
    nib.save(nib.Nifti1Image(series, np.eye(4)), tmp_path / "heads" / "series.nii.gz")
    with pytest.raises(NeuroSQLError, match="fourth axis holds 3 volumes"):
        load_data(f"nifti:{tmp_path / 'heads'}", "train", volumes=True, progress=False)


def test_cli_trains_on_nifti_volumes_and_writes_nifti_samples(tmp_path):
    import nibabel as nib

    _nifti_heads(tmp_path / "heads")
    out = tmp_path / "run"
    assert main(["train", "--data", f"nifti:{tmp_path / 'heads'}", "--volumes", "--resolution", "16", "--out", str(out),
                 "--epochs", "1", "--latent-dim", "3", "--width", "8", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["options"] == {"volumes": True}
    samples = nib.load(out / "samples.nii.gz")
    assert samples.shape == (16, 16, 16, 64)
    data = load_run_data(out, "train", progress=False)  # the run's own data, volumes again
    assert data.images.shape[1:] == (1, 16, 16, 16) and np.allclose(samples.affine, data.affine)
    assert np.allclose(np.asanyarray(samples.dataobj)[..., 0], np.load(out / "samples.npy")[0, 0], atol=1e-6)
    assert main(["sample", "--checkpoint", str(out), "-n", "3", "--out", str(tmp_path / "drawn") + "/"]) == 0
    drawn = np.load(tmp_path / "drawn" / "samples.npy")  # (3, 1, 16, 16, 16)
    for i in range(3):  # one 3-D NIfTI per volume, in the run's space
        volume = nib.load(tmp_path / "drawn" / f"sample_{i:04d}.nii.gz")
        assert volume.shape == (16, 16, 16) and np.allclose(volume.affine, data.affine)
        assert np.allclose(np.asanyarray(volume.dataobj), drawn[i, 0], atol=1e-6)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-evaluate"]) == 0


def test_proxy_fid_3d_is_zero_on_itself_and_orders_worse_sets():
    from neurosql.metrics.fid import proxy_fid_3d

    heads = torch.from_numpy(ellipsoids(24))
    others = torch.from_numpy(ellipsoids(24, seed=1))  # other draws of the same kind
    noise = torch.rand_like(heads)
    assert abs(proxy_fid_3d(heads, heads)) < 1e-6
    assert proxy_fid_3d(heads, others) < proxy_fid_3d(heads, noise)
    assert proxy_fid_3d(heads, heads, seed=1) == pytest.approx(0, abs=1e-6)
    with pytest.raises(NeuroSQLError, match="volumes"):
        proxy_fid_3d(heads[:, :, 0], heads[:, :, 0])


def test_volume_metrics_are_exact_on_identical_sets_and_refuse_images():
    from neurosql.metrics.volumes import evaluate_volumes, reconstruction_ssim_3d

    heads = torch.from_numpy(ellipsoids(8))
    out = evaluate_volumes(heads, heads, recon=heads)
    assert out["pfid_3d"] == pytest.approx(0, abs=1e-6) and out["recon_ssim_3d"] == pytest.approx(1, abs=1e-6)
    assert reconstruction_ssim_3d(heads, torch.rand_like(heads)) < 0.5
    with pytest.raises(NeuroSQLError, match="paired"):
        reconstruction_ssim_3d(heads, heads[:3])
    with pytest.raises(NeuroSQLError):
        evaluate_volumes(heads[:, :, 0], heads[:, :, 0])  # images, not volumes


def test_volumes_get_the_higher_automatic_budget_floor():
    """A 3-D fit with no epochs or steps trains at least AUTO_MIN_STEPS_VOLUMES updates (images: AUTO_STEPS[0])."""
    from neurosql.engine.config import AUTO_MIN_STEPS_VOLUMES, AUTO_STEPS

    class Stop(Exception):
        pass

    def stop(model, row):
        raise Stop

    budgets = {}
    for name, X in (("volumes", torch.rand(20, 1, 16, 16, 16)), ("images", torch.rand(20, 1, 16, 16))):
        model = NeuroSQL(latent_dim=2, width=8, progress=False)
        with pytest.raises(Stop):
            model.fit(X, callback=stop)
        budgets[name] = model.budget_.steps
    assert AUTO_STEPS[0] <= budgets["images"] < AUTO_MIN_STEPS_VOLUMES <= budgets["volumes"]
