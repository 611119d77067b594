"""Feature extractors for distribution metrics: the fixed proxy convnet of App. E and pretrained VGG.

FID-style metrics need an embedding. Inception is trained on ImageNet and does
not suit digits or brain slices, so the paper (App. E) uses a *fixed* random
convnet: its features are not semantic, but they are identical on every
machine, so the resulting pFID is a reproducible coarse indicator. A
domain-trained alternative lives in ``metrics.classifier``; ``VGGFeatureNet``
gives pretrained (ImageNet) features from the ST-LPIPS VGG trunk, the only
pretrained network available without a download.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_images
from neurosql.metrics.lpips import unit_channels


def _materialise_fixed(net: nn.Module, layers: list[nn.Module], seed: int) -> None:
    """Give ``net``, built on the meta device, float64 weights drawn He-normal from a local
    ``torch.Generator(seed)`` (zero biases) and freeze it: the global RNG is never touched."""
    net.to_empty(device="cpu")
    net.double()
    generator = torch.Generator().manual_seed(seed)
    for layer in layers:
        nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu", generator=generator)
        nn.init.zeros_(layer.bias)
    net.requires_grad_(False)
    net.eval()


class ProxyFeatureNet(nn.Module):
    """Fixed random convnet, images (n, C, H, W) in [0, 1] -> features (n, 128).

    Architecture: bilinear antialiased resize to ``size`` x ``size``, grayscale
    replicated to 3 channels, scale to [-1, 1], four 4x4 stride-2 convs
    (3 -> 16 -> 32 -> 64 -> 128) with LeakyReLU(0.2), global average pooling,
    linear 128 -> ``dim``. Weights are He-normal draws from a local
    ``torch.Generator(seed)``, biases zero, all in float64: building the net
    never touches the global RNG, and the numbers do not depend on the machine
    beyond float64 round-off. Cost: about 7 M multiply-adds per 64x64 image.
    Reference: NeuroSQL paper, App. E (proxy FID).
    """

    def __init__(self, seed: int = 0, size: int = 64, dim: int = 128):
        super().__init__()
        self.size = size
        widths = [3, 16, 32, 64, 128]
        # Built on the meta device so that PyTorch's default init, which draws
        # from the global RNG, never runs; real weights come from `generator`.
        with torch.device("meta"):
            self.convs = nn.ModuleList(
                nn.Conv2d(c_in, c_out, 4, stride=2, padding=1) for c_in, c_out in zip(widths, widths[1:])
            )
            self.head = nn.Linear(widths[-1], dim)
        _materialise_fixed(self, [*self.convs, self.head], seed)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            # The net is 3-channel; replicate grayscale at metric time only (App. J).
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise NeuroSQLError(f"proxy features need 1 or 3 channels; got {images.shape[1]}")
        x = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        x = 2 * x - 1  # (n, 3, size, size)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)  # (n, c, size / 2^k, size / 2^k)
        return self.head(x.mean(dim=(2, 3)))  # (n, dim)


class ProxyFeatureNet3D(nn.Module):
    """The proxy net in 3-D (App. E's recipe for volumes): volumes (n, C, D, H, W) in [0, 1] ->
    features (n, 128).

    Trilinear resize to ``size``³, channels averaged to one, scale to [-1, 1], four 4³ stride-2
    Conv3d (1 -> 16 -> 32 -> 64 -> 128) with LeakyReLU(0.2), global average pooling, linear
    128 -> ``dim``; He-normal weights from a local ``torch.Generator(seed)``, float64, as
    :class:`ProxyFeatureNet`. Cost: about 30 M multiply-adds per 32³ volume.
    """

    def __init__(self, seed: int = 0, size: int = 32, dim: int = 128):
        super().__init__()
        self.size = size
        widths = [1, 16, 32, 64, 128]
        with torch.device("meta"):  # no default init from the global RNG
            self.convs = nn.ModuleList(
                nn.Conv3d(c_in, c_out, 4, stride=2, padding=1) for c_in, c_out in zip(widths, widths[1:])
            )
            self.head = nn.Linear(widths[-1], dim)
        _materialise_fixed(self, [*self.convs, self.head], seed)

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(volumes.mean(dim=1, keepdim=True), size=(self.size,) * 3, mode="trilinear", align_corners=False)
        x = 2 * x - 1  # (n, 1, size, size, size)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)  # (n, c, size / 2^k, ...)
        return self.head(x.mean(dim=(2, 3, 4)))  # (n, dim)


def pooled_unit_features(taps: list[torch.Tensor]) -> torch.Tensor:
    """Concatenated over layers: activations (n, C_l, H_l, W_l) unit-normalised over channels, averaged over positions.

    These are the normalised activations LPIPS compares. Normalising removes
    the activation magnitude, which otherwise dominates Fréchet distances
    (noise and texture inflate VGG activations far more than a missing digit
    does). Each layer's part has norm <= 1. Returns (n, sum_l C_l).
    """
    return torch.cat([unit_channels(t).mean(dim=(2, 3)) for t in taps], dim=1)


class VGGFeatureNet(nn.Module):
    """Pretrained features, images (n, C, H, W) in [0, 1] -> (n, 1472), from the ST-LPIPS VGG.

    ``pooled_unit_features`` of the five LPIPS taps (relu1_2 ... relu5_3:
    64 + 128 + 256 + 512 + 512 channels). The input rule is ST-LPIPS's
    (grayscale to 3 channels, shorter side upsampled to 64, LPIPS scaling).
    Wraps a loaded ``STLPIPS`` (``load_stlpips``). The trunk was trained on
    ImageNet with anti-aliased pooling: distances on these features are not
    comparable with Inception-based FID or KID.
    """

    def __init__(self, stlpips: nn.Module):
        super().__init__()
        self.stlpips = stlpips

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return pooled_unit_features(self.stlpips.taps(images))  # (n, 1472)


def extract_features(net: nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Embed images with ``net`` in batches, without gradients.

    ``net`` is any module mapping (b, C, H, W) in [0, 1] to (b, d): the proxy
    net or a domain classifier's penultimate layer. Images are moved to the
    net's device and dtype batch by batch, so a large CPU set can be embedded
    on a GPU. Returns float64 (n, d).
    """
    images = check_images(images, "images")
    if batch_size < 1:
        raise NeuroSQLError(f"batch_size must be >= 1; got {batch_size}")
    param = next(net.parameters())
    was_training = net.training
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device=param.device, dtype=param.dtype)
            out.append(net(batch).to("cpu", torch.float64))
    net.train(was_training)
    return torch.cat(out).numpy()  # (n, d)


def matched_subsets(real: torch.Tensor, fake: torch.Tensor, n: int, seed: int = 0):
    """Pick ``m = min(n, len(real), len(fake))`` images of each set, reproducibly.

    Each set is permuted by its own ``numpy.random.default_rng(seed)`` and its
    first ``m`` images are kept, so equal-sized sets get the same positions
    (a set compared with itself gives exactly 0) and the choice depends on
    nothing but ``seed``. Returns (real_subset, fake_subset), each (m, C, H, W).
    """
    if n < 2:
        raise NeuroSQLError(f"n must be >= 2 images per set; got {n}")
    m = min(n, real.shape[0], fake.shape[0])
    return real[seeded_order(real.shape[0], seed)[:m]], fake[seeded_order(fake.shape[0], seed)[:m]]


def seeded_order(count: int, seed: int) -> torch.Tensor:
    """The permutation of ``count`` images that :func:`matched_subsets` keeps a prefix of."""
    return torch.from_numpy(np.random.default_rng(seed).permutation(count))
