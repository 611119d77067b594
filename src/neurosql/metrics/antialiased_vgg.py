"""The anti-aliased VGG16 trunk of shift-tolerant LPIPS, and where its weights live.

The only pretrained perceptual network that can be had here without a
download ships as data inside the ``stlpips-pytorch`` wheel (BSD-2-Clause;
install the ``[metrics]`` extra): ``weights/vST0.0/vgg_shift_tolerant.pth``
holds an ImageNet VGG16 conv trunk retrained with anti-aliased pooling, plus
the LPIPS linear heads and input scaling. That package's Python code needs
torchvision, so it is never imported: the file is located with
``importlib.resources`` and the network is built here, its state-dict keys
matching the file's (``net.slice<k>.<i>.*``).
Reference: Ghildyal & Liu (2022), "Shift-tolerant Perceptual Similarity
Metric", ECCV; Zhang (2019), "Making Convolutional Networks Shift-Invariant
Again", ICML (BlurPool).
"""
import importlib.resources
import importlib.util
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from neurosql.errors import NeuroSQLError

STLPIPS_PACKAGE = "stlpips_pytorch"
STLPIPS_VGG_FILE = ("weights", "vST0.0", "vgg_shift_tolerant.pth")
# VGG16 blocks (config "D"): convolution widths, each block ending at the tap LPIPS compares
# (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# Binomial [1, 2, 1] x [1, 2, 1] / 16: the low-pass filter applied before every stride-2 subsampling.
BINOMIAL_3 = torch.tensor([1.0, 2.0, 1.0])


class BlurDownsample(nn.Module):
    """Low-pass then subsample: (n, C, H, W) -> (n, C, floor(H/2) + 1, floor(W/2) + 1).

    Reflect-pads by 2 on every side, convolves each channel with the 3x3
    binomial filter ``filt`` (C, 1, 3, 3) and keeps every second pixel.
    Blurring before subsampling removes the aliasing that makes plain
    stride-2 max-pooling sensitive to one-pixel shifts; the wider padding is
    the shift-tolerant variant's (Ghildyal & Liu 2022, §4).
    """

    def __init__(self, channels: int):
        super().__init__()
        kernel = torch.outer(BINOMIAL_3, BINOMIAL_3) / BINOMIAL_3.sum() ** 2
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.filt, stride=2, groups=x.shape[1])


class AntialiasedVGG16(nn.Module):
    """VGG16 conv trunk with BlurPool, (n, 3, H, W) -> the five taps relu1_2 ... relu5_3.

    Each block after the first opens with max-pool 2x2 at stride 1 and a
    ``BlurDownsample`` (this replaces VGG's stride-2 max-pool), then 3x3
    convolutions (zero padding 1) with ReLU. Block k is ``slice<k>``; module
    indices count layers through the whole trunk, as in the weight file.
    Needs H, W >= 18 (the reflect padding of the last block needs 3 pixels);
    the metrics upsample to 64 anyway. Cost about 1.3 G multiply-adds per
    64 x 64 image.
    """

    def __init__(self):
        super().__init__()
        index, c_in = 0, 3
        # Meta tensors: every weight comes from the file, so no init work and no global RNG use.
        with torch.device("meta"):
            for k, widths in enumerate(VGG16_BLOCKS, start=1):
                block = nn.Sequential()
                if k > 1:
                    block.add_module(str(index), nn.MaxPool2d(2, stride=1))
                    block.add_module(str(index + 1), BlurDownsample(c_in))
                    index += 2
                for c_out in widths:
                    block.add_module(str(index), nn.Conv2d(c_in, c_out, 3, padding=1))
                    block.add_module(str(index + 1), nn.ReLU(inplace=True))
                    index, c_in = index + 2, c_out
                self.add_module(f"slice{k}", block)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for k in range(1, len(VGG16_BLOCKS) + 1):
            x = getattr(self, f"slice{k}")(x)
            taps.append(x)  # (n, C_k, H_k, W_k)
        return taps


def stlpips_weights_path() -> Path | None:
    """The ST-LPIPS VGG weight file inside the installed ``stlpips-pytorch`` package, or None."""
    # Only the package's empty __init__ runs here; its modules import torchvision and are never loaded.
    if importlib.util.find_spec(STLPIPS_PACKAGE) is None:
        return None
    path = Path(str(importlib.resources.files(STLPIPS_PACKAGE).joinpath(*STLPIPS_VGG_FILE)))
    return path if path.is_file() else None


def stlpips_available() -> tuple[bool, str]:
    """Whether the ST-LPIPS VGG weights are installed; ``(True, "")`` or ``(False, reason)``."""
    if importlib.util.find_spec(STLPIPS_PACKAGE) is None:
        return False, "the stlpips-pytorch package is not installed; pip install 'neurosql[metrics]'"
    if stlpips_weights_path() is None:
        return False, f"stlpips-pytorch is installed but lacks {'/'.join(STLPIPS_VGG_FILE)}; reinstall it (version 0.0.2)"
    return True, ""


def read_state(path: Path) -> dict:
    """A state dict from a .pth file, tensors only (``weights_only``); NeuroSQLError if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a bad file; all mean the same to the user
        raise NeuroSQLError(f"cannot read weights from {path}: {type(err).__name__}; pass a state-dict .pth file") from None
    if not isinstance(state, dict):
        raise NeuroSQLError(f"{path} holds a {type(state).__name__}, not a state dict; pass a state-dict .pth file")
    return state
