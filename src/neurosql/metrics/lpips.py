"""LPIPS, built in-project so that it loads weights without torchvision or a download.

Two variants, both VGG16 with the five LPIPS linear heads:

* the original LPIPS (Zhang et al. 2018) from user-supplied files: a
  torchvision ``vgg16-397923af.pth`` (keys ``features.<i>.weight``) and the
  ``lpips`` package's ``vgg.pth`` heads (keys ``lin<l>.model.1.weight``);
* shift-tolerant LPIPS (``STLPIPS``, Ghildyal & Liu 2022) from the weight file
  shipped inside the ``stlpips-pytorch`` wheel (see ``antialiased_vgg``), used
  when the original files are not there.

The two give different numbers: ST-LPIPS is not the original LPIPS. With a
VGG16 file but neither LPIPS heads nor ST-LPIPS, App. E's fallback is used:
cosine distance on the same VGG features (``load_vgg_cosine``), reported under
its own variant name. Weights are never downloaded: when no file is available
the metric is reported as unavailable with the reason.
"""
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from neurosql.errors import NeuroSQLError
from neurosql.metrics._validate import check_images, check_same_image_shape
from neurosql.metrics.antialiased_vgg import AntialiasedVGG16, read_state, stlpips_available, stlpips_weights_path

VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# Indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the taps LPIPS compares.
LPIPS_TAPS = (3, 8, 15, 22, 29)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# Published LPIPS input scaling (Zhang et al. 2018), applied to images in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
VGG16_FILE = "vgg16-397923af.pth"
# The LPIPS heads were fitted on 64 x 64 patches (BAPPS); ST-LPIPS upsamples smaller images to that size.
STLPIPS_MIN_SIDE = 64
ORIGINAL_VARIANT = "VGG16 (original LPIPS)"
COSINE_VARIANT = "VGG16 cosine (App. E fallback, no LPIPS heads)"
STLPIPS_VARIANT = "shift-tolerant VGG (ST-LPIPS)"


def unit_channels(x: torch.Tensor) -> torch.Tensor:
    """Activations (n, C, H, W) divided by their L2 norm over channels at each position."""
    return x / (x.norm(dim=1, keepdim=True) + 1e-10)


def heads_sum(heads, taps_x: list[torch.Tensor], taps_y: list[torch.Tensor]) -> torch.Tensor:
    """sum_l mean_{h,w} head_l((u_l(x) - u_l(y))^2): the LPIPS distance from tap activations, (n,)."""
    total = 0
    for head, a, b in zip(heads, taps_x, taps_y):
        total = total + head((unit_channels(a) - unit_channels(b)) ** 2).mean(dim=(1, 2, 3))
    return total


def rgb(x: torch.Tensor) -> torch.Tensor:
    """Grayscale (n, 1, H, W) replicated to 3 channels at metric time only (App. J); RGB passes through."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def upsample_to(x: torch.Tensor, min_side: int) -> torch.Tensor:
    """Bilinear upsampling so that the shorter side is at least ``min_side`` (aspect kept); larger images pass."""
    short = min(x.shape[2:])
    if short >= min_side:
        return x
    size = tuple(max(min_side, round(s * min_side / short)) for s in x.shape[2:])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LPIPS(nn.Module):
    """LPIPS distance, images (n, C, H, W) in [0, 1] (C = 1 or 3, H, W >= 16) -> (n,).

        d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (u_l(x) - u_l(y))_{c,h,w}^2,
        u_l = phi_l / ||phi_l||_2 over channels at each position,

    phi_l the VGG16 activations at ``LPIPS_TAPS``, w_l the non-negative linear
    heads. d(x, x) = 0 and d is symmetric. Build with ``load_lpips``.
    Reference: Zhang et al. (2018), "The Unreasonable Effectiveness of Deep
    Features as a Perceptual Metric", CVPR.
    """

    def __init__(self):
        super().__init__()
        # Meta tensors: every weight comes from a file, so no init work and no global RNG use.
        with torch.device("meta"):
            layers, c_in = [], 3
            for v in VGG16_CONFIG:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
                    c_in = v
            self.features = nn.Sequential(*layers[: LPIPS_TAPS[-1] + 1])  # last pool is never used
            self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (2 * rgb(x) - 1 - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                out.append(x)  # (n, C_l, H_l, W_l)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return heads_sum(self.lins, self._taps(x), self._taps(y))  # (n,)


def _default_lin_path() -> Path | None:
    # Where the `lpips` package ships its heads; located without importing it,
    # because importing `lpips` imports torchvision, which does not load here.
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "vgg.pth"


def _resolve(vgg_path, lin_path) -> tuple[Path | None, Path | None]:
    vgg = Path(vgg_path) if vgg_path else Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    lin = Path(lin_path) if lin_path else _default_lin_path()
    return vgg, lin


def lpips_available(vgg_path=None, lin_path=None) -> tuple[bool, str]:
    """Whether LPIPS weight files exist locally; never downloads.

    ``vgg_path`` defaults to the torch hub cache (``<hub>/checkpoints/vgg16-397923af.pth``),
    ``lin_path`` to the ``lpips`` package's ``weights/v0.1/vgg.pth`` if that
    package is installed. Returns ``(True, "")`` or ``(False, reason)``.
    """
    vgg, lin = _resolve(vgg_path, lin_path)
    if not vgg.is_file():
        return False, f"VGG16 weights not found at {vgg}; pass vgg_path= a torchvision {VGG16_FILE} file"
    if lin is None or not lin.is_file():
        where = f"at {lin}" if lin else "(the lpips package is not installed)"
        return False, f"LPIPS linear heads not found {where}; pass lin_path= the lpips package's vgg.pth"
    return True, ""


def load_lpips(vgg_path=None, lin_path=None, device="cpu") -> LPIPS:
    """Build ``LPIPS`` from local weight files (see ``lpips_available``), in eval mode on ``device``."""
    ok, reason = lpips_available(vgg_path, lin_path)
    if not ok:
        raise NeuroSQLError(reason)
    vgg, lin = _resolve(vgg_path, lin_path)
    lin_state = read_state(lin)
    heads = {}
    for l in range(len(LPIPS_CHANNELS)):
        key = f"lin{l}.model.1.weight"
        if key not in lin_state:
            raise NeuroSQLError(f"{lin} lacks the LPIPS head {key}; pass the lpips package's vgg.pth as lin_path")
        heads[f"lins.{l}.weight"] = lin_state[key].float()
    return _vgg_with_heads(vgg, lin, heads, device)


def load_vgg_cosine(vgg_path=None, device="cpu") -> LPIPS:
    """App. E's LPIPS fallback from a VGG16 file alone: d(x, y) = mean_l mean_{h,w} (1 − cos(φ_l(x), φ_l(y))),
    the cosine over channels at each position of the five LPIPS taps. It is LPIPS with every head weight
    1 / (2·5), since ||u − v||² = 2 − 2 cos for unit vectors; 0 on equal images, at most 2."""
    vgg, _ = _resolve(vgg_path, None)
    if not vgg.is_file():
        raise NeuroSQLError(f"VGG16 weights not found at {vgg}; pass vgg_path= a torchvision {VGG16_FILE} file")
    heads = {f"lins.{l}.weight": torch.full((1, c, 1, 1), 0.5 / len(LPIPS_CHANNELS)) for l, c in enumerate(LPIPS_CHANNELS)}
    return _vgg_with_heads(vgg, None, heads, device)


def _vgg_with_heads(vgg: Path, lin: Path | None, heads: dict, device) -> LPIPS:
    """An ``LPIPS`` net with the VGG16 features of file ``vgg`` and the given head weights."""
    state = {k: v.float() for k, v in read_state(vgg).items() if k.startswith("features.")}  # drop the classifier
    state.update(heads)
    net = LPIPS()
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise NeuroSQLError(f"weights in {vgg}{f' / {lin}' if lin else ''} do not fit VGG16 LPIPS: {detail}") from None
    return net.to(device).eval().requires_grad_(False)


class _ScalingLayer(nn.Module):
    """x -> (x - shift) / scale per channel, x in [-1, 1]; the two (1, 3, 1, 1) buffers come from the weight file."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.empty(1, 3, 1, 1, device="meta"))
        self.register_buffer("scale", torch.empty(1, 3, 1, 1, device="meta"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class _Head(nn.Module):
    """One non-negative 1x1 head C_l -> 1; ``model.0`` held dropout during training, so only ``model.1`` has weights."""

    def __init__(self, channels: int):
        super().__init__()
        with torch.device("meta"):
            self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class STLPIPS(nn.Module):
    """Shift-tolerant LPIPS (VGG), images (n, C, H, W) in [0, 1] (C = 1 or 3) -> (n,).

    The LPIPS formula of ``LPIPS`` on the taps of ``AntialiasedVGG16``.
    Inputs: grayscale replicated to 3 channels, images whose shorter side is
    below 64 upsampled bilinearly to 64 (aspect kept; the heads were fitted on
    64 x 64 patches), [0, 1] mapped to [-1, 1], then the file's scaling layer.
    Attribute names follow the weight file: ``scaling_layer``, ``net``,
    ``lin0`` ... ``lin4``. Build with ``load_stlpips``.
    Reference: Ghildyal & Liu (2022), "Shift-tolerant Perceptual Similarity Metric", ECCV.
    """

    def __init__(self):
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        self.net = AntialiasedVGG16()
        for l, c in enumerate(LPIPS_CHANNELS):
            self.add_module(f"lin{l}", _Head(c))

    def taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five raw VGG activations of images (n, C, H, W) in [0, 1], after the input rule above."""
        x = upsample_to(rgb(images), STLPIPS_MIN_SIDE)  # (n, 3, >= 64, >= 64)
        return self.net(self.scaling_layer(2 * x - 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        heads = [getattr(self, f"lin{l}") for l in range(len(LPIPS_CHANNELS))]
        return heads_sum(heads, self.taps(x), self.taps(y))  # (n,)


def load_stlpips(device="cpu") -> STLPIPS:
    """Build ``STLPIPS`` from the installed ``stlpips-pytorch`` weight file, in eval mode on ``device``."""
    ok, reason = stlpips_available()
    if not ok:
        raise NeuroSQLError(reason)
    path = stlpips_weights_path()
    net = STLPIPS()
    try:
        net.load_state_dict(read_state(path), strict=True, assign=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise NeuroSQLError(f"weights in {path} do not fit the ST-LPIPS VGG: {detail}; reinstall stlpips-pytorch==0.0.2") from None
    return net.to(device).eval().requires_grad_(False)


def lpips_distance(net: LPIPS | STLPIPS, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """LPIPS (either variant) between paired images x[i], y[i], both (n, C, H, W) in [0, 1]; float64 (n,)."""
    x, y = check_images(x, "x"), check_images(y, "y")
    check_same_image_shape(x, y, "x and y")
    if x.shape[0] != y.shape[0]:
        raise NeuroSQLError(f"LPIPS compares pairs: got {x.shape[0]} and {y.shape[0]} images")
    if isinstance(net, LPIPS) and min(x.shape[2:]) < 16:
        raise NeuroSQLError(f"LPIPS (VGG16) needs images of at least 16x16; got {tuple(x.shape[2:])}")
    param = next(net.parameters())
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size].to(param.device, param.dtype)
            yb = y[s:s + batch_size].to(param.device, param.dtype)
            out.append(net(xb, yb).to("cpu", torch.float64))
    return torch.cat(out).numpy()


def paired_lpips(real: torch.Tensor, fake: torch.Tensor, vgg_path=None, lin_path=None) -> dict:
    """Mean LPIPS over given pairs (real[i], fake[i]), its variant, or why it could not be computed.

    The original LPIPS is used when its files are given (``vgg_path``,
    ``lin_path``) or found at their default places; otherwise, unless paths
    were given, ST-LPIPS from the ``stlpips-pytorch`` package; otherwise, with a
    VGG16 file, App. E's cosine fallback (``load_vgg_cosine``). Returns
    ``{"lpips": float, "lpips_variant": str, "lpips_reason": None}`` or, with
    no weights, ``{"lpips": None, "lpips_variant": None, "lpips_reason": str}``.
    """
    ok, reason = lpips_available(vgg_path, lin_path)
    st_ok, st_reason = stlpips_available()
    if ok:
        net, variant = load_lpips(vgg_path, lin_path, device=real.device), ORIGINAL_VARIANT
    elif st_ok and vgg_path is None and lin_path is None:  # files the user named are not replaced by ST-LPIPS
        net, variant = load_stlpips(device=real.device), STLPIPS_VARIANT
    elif _resolve(vgg_path, None)[0].is_file() and lin_path is None:
        net, variant = load_vgg_cosine(vgg_path, device=real.device), COSINE_VARIANT
    elif vgg_path is not None or lin_path is not None:
        return {"lpips": None, "lpips_variant": None, "lpips_reason": reason}
    else:
        return {"lpips": None, "lpips_variant": None, "lpips_reason": f"{st_reason} (or: {reason})"}
    return {"lpips": float(lpips_distance(net, real, fake).mean()), "lpips_variant": variant, "lpips_reason": None}
