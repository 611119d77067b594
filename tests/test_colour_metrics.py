"""Colour metrics: per-image statistics against scikit-image's YUV, and the distances on constructed sets."""

import numpy as np
import pytest
import torch
from skimage.color import hsv2rgb, rgb2hsv, rgb2yuv

from neurosql.errors import NeuroSQLError
from neurosql.metrics.colour import colour_error, colour_fd, colour_metrics, colour_stats


def patches(n: int, seed: int) -> torch.Tensor:
    """n 16-px images of warm colours (as skin or a sunset: hues not uniform, so a hue shift shows), each a
    random colour plus a smooth random-colour gradient, so each has a mean and a spread."""
    g = torch.Generator().manual_seed(seed)
    warm = torch.tensor([1.0, 0.6, 0.3])[:, None, None]
    base, slope = torch.rand(n, 3, 1, 1, generator=g) * warm, torch.rand(n, 3, 1, 1, generator=g) - 0.5
    ramp = torch.linspace(0, 1, 16)[None, None, None]  # (1, 1, 1, 16)
    return (0.6 * base + 0.4 * (0.5 + slope * (ramp - 0.5))).expand(n, 3, 16, 16).clamp(0, 1)


def hue_shifted(x: torch.Tensor, shift: float) -> torch.Tensor:
    hsv = rgb2hsv(x.permute(0, 2, 3, 1).numpy())
    hsv[..., 0] = (hsv[..., 0] + shift) % 1
    return torch.from_numpy(hsv2rgb(hsv)).permute(0, 3, 1, 2).float()


def test_colour_stats_match_skimage_yuv():
    x = patches(4, 0)
    yuv = rgb2yuv(x.double().permute(0, 2, 3, 1).numpy()).reshape(4, -1, 3)  # (n, H W, 3)
    expected = np.concatenate([yuv.mean(1), yuv[..., 1:].std(1)], axis=1)
    np.testing.assert_allclose(colour_stats(x), expected, atol=1e-12)


def test_colour_fd_is_zero_for_identical_sets_and_grows_with_a_hue_shift_or_greying():
    real, other = patches(200, 1), patches(200, 2)
    assert abs(colour_fd(real, real)) < 1e-9
    base = colour_fd(real, other)  # real against real: sampling noise only
    assert colour_fd(real, hue_shifted(other, 0.25)) > 5 * base
    grey = other.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert colour_fd(real, grey) > 5 * base
    assert colour_fd(real, hue_shifted(other, 0.1)) < colour_fd(real, hue_shifted(other, 0.25))


def test_colour_error_is_the_mean_gap_of_region_colours():
    x = patches(3, 3) * 0.8
    assert colour_error(x, x) == 0
    assert colour_error(x, x + 0.1) == pytest.approx(0.1)
    y = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    blocks = lambda t: t.double().numpy().reshape(3, 3, 4, 4, 4, 4).mean(axis=(3, 5))  # 4x4 regions of 4x4 pixels
    assert colour_error(x, y) == pytest.approx(np.abs(blocks(x) - blocks(y)).mean())
    whole = np.abs(x.double().mean((2, 3)).numpy() - y.double().mean((2, 3)).numpy()).mean()
    assert colour_error(x, y, blocks=1) == pytest.approx(float(whole))


def test_colour_metrics_skip_grey_images_and_bad_input_raises():
    grey = torch.rand(4, 1, 16, 16)
    assert colour_metrics(grey, grey) == {}
    assert set(colour_metrics(patches(4, 0), patches(4, 1))) == {"colour_fd"}
    with pytest.raises(NeuroSQLError, match="RGB"):
        colour_error(grey, grey)
    with pytest.raises(NeuroSQLError, match="blocks"):
        colour_error(patches(2, 0), patches(2, 1), blocks=17)
    with pytest.raises(NeuroSQLError, match="share"):
        colour_fd(patches(4, 0), patches(4, 1)[:, :, :8])
