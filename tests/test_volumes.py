"""3-D volumes end to end: generator shapes, 5-D .npy data, mid-slice grids, NeuroSQL on volumes."""

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
