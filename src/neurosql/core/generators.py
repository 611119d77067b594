"""Generator backbones G_θ: R^d → [0, 1]^(C×R×R) (paper §3 and App. L).

Four pure networks, chosen by name through :func:`build_generator`:

``convnet``  the paper's baseline: a DCGAN-like stack of stride-2 transposed
             convolutions with halving widths.
``resnet``   four residual x2-upsampling blocks, halving (512→256→128→64 in the
             paper) or constant width.
``unet``     a three-level U-Net on a learnable constant input; z enters only
             through FiLM, at every convolution of every level.
``transformer`` the transformer decoder on patchified z (App. L): z projected
             to one token per 4x4 patch, four pre-norm transformer blocks.

For volumes (n, C, D, H, W), ``build_generator(..., volume=True)`` gives the
ConvNet with every layer made volumetric (:class:`ConvNet3D`, the only 3-D
backbone so far); its ``config`` carries ``volume=True`` so checkpoints rebuild it.

Each maps codes ``z`` (B, d) to images (B, C, R, R) through a sigmoid and knows
nothing of lattices, codes or assignment. Every module records ``latent_dim``,
``resolution``, ``channels`` and a ``config`` dict such that
``build_generator(**g.config)`` rebuilds the same architecture (checkpoints).

Every convolution or linear layer that feeds a BatchNorm has no bias: the
normalisation would remove it, and it would receive an identically zero gradient.
Layers keep PyTorch's default initialisation: with a BatchNorm before every
ReLU, a fresh network's pre-sigmoid output has a standard deviation of a few
tenths, so images start grey, never saturated at 0 or 1. Only the FiLM maps are
initialised explicitly, because their scale sets how strongly z acts at first.
"""

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NeuroSQLError

MIN_WIDTH = 8  # narrowest layer; halving schedules stop here and `width` may not go below
MAX_RESOLUTION = 512  # largest side that supported_resolutions enumerates


def _halving(width: int, n: int) -> list[int]:
    """n channel widths width, width/2, width/4, ... floored at MIN_WIDTH."""
    return [max(width >> i, MIN_WIDTH) for i in range(n)]


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _is_int(value) -> bool:
    # numpy integers count (they come from arrays and sweeps); booleans do not
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_int(name: str, value, low: int, fix: str) -> int:
    if not _is_int(value) or value < low:
        raise NeuroSQLError(f"{name} must be an integer >= {low}, got {value!r}; {fix}")
    return int(value)


class _Generator(nn.Module):
    """Shared bookkeeping: argument checks, the rebuild ``config``, the input check."""

    NAME = ""
    DEFAULT_WIDTH = 0
    OPTIONS: tuple[str, ...] = ()  # extra keyword arguments build_generator accepts
    RULE = ""  # the supported resolutions, in words

    def __init__(self, latent_dim: int, resolution: int, channels: int, width: int | None, **options):
        super().__init__()
        latent_dim = _check_int("latent_dim", latent_dim, 1, "use a positive latent dimension such as 32")
        if not _is_int(channels) or channels not in (1, 3):
            raise NeuroSQLError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        if not _is_int(resolution) or not self.fits(resolution):
            near = ""
            if _is_int(resolution):
                sides = [r for r in range(1, MAX_RESOLUTION + 1) if self.fits(r)]
                nearest = [max((r for r in sides if r < resolution), default=None),
                           min((r for r in sides if r > resolution), default=None)]
                near = f" (nearest: --resolution {' or '.join(str(r) for r in nearest if r is not None)})"
            raise NeuroSQLError(
                f"{self.NAME} cannot produce {resolution!r}x{resolution!r} images; it supports {self.RULE}; "
                f"resize the images{near} or choose another generator"
            )
        width = self.DEFAULT_WIDTH if width is None else width
        width = _check_int("width", width, MIN_WIDTH, f"pass a width >= {MIN_WIDTH} or None for the default")
        channels, resolution = int(channels), int(resolution)
        self.latent_dim, self.resolution, self.channels, self.width = latent_dim, resolution, channels, width
        self.config = dict(
            name=self.NAME, latent_dim=latent_dim, resolution=resolution, channels=channels, width=width, **options
        )

    @staticmethod
    def fits(resolution: int) -> bool:
        """Whether the backbone produces resolution x resolution images (each states its rule)."""
        raise NotImplementedError

    def _check_codes(self, z: torch.Tensor) -> None:
        if not torch.is_tensor(z) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
            raise NeuroSQLError(f"codes must be a tensor of shape (B, {self.latent_dim}), got {shape}")


# --------------------------------------------------------------------- ConvNet
class ConvNet(_Generator):
    """DCGAN-like baseline: z → Linear → (w, s0, s0) → k × [ConvT 4x4/2 + BN + ReLU] → Conv3x3 → sigmoid.

    Shapes: z (B, d) → (B, w, s0, s0) → ... → (B, w/2^k, R, R) → (B, C, R, R),
    with R = s0·2^k, s0 = 7 when 7 divides R (28 = 7·4) and 4 otherwise (32 = 4·8).
    Widths halve at each stage, floored at MIN_WIDTH. Cost per image
    O(d·w·s0² + Σ_i w_i·w_{i+1}·16·(s0 2^i)²).
    Reference: Radford et al., DCGAN (ICLR 2016), the layout of the generator.
    """

    NAME = "convnet"
    DEFAULT_WIDTH = 160  # 28x28x1, d = 32: 0.51 M parameters, 7.9 GFLOP per batch-64 step (small DCGAN)
    RULE = "4·2^k or 7·2^k for k >= 1 (8, 14, 16, 28, 32, 56, 64, 112, 128, ...) up to 512"

    def __init__(self, latent_dim: int, resolution: int = 28, channels: int = 1, width: int | None = None):
        super().__init__(latent_dim, resolution, channels, width)
        d, R, C = self.latent_dim, self.resolution, self.channels
        s0 = self._start_size(R)
        widths = _halving(self.width, int(math.log2(R // s0)) + 1)
        self.project = nn.Sequential(
            nn.Linear(d, widths[0] * s0 * s0, bias=False),
            nn.Unflatten(1, (widths[0], s0, s0)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        for c_in, c_out in zip(widths, widths[1:]):
            # kernel 4, stride 2, padding 1 doubles the side exactly and covers every output pixel evenly
            stages += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.upsample = nn.Sequential(*stages)
        self.head = nn.Conv2d(widths[-1], C, 3, padding=1)

    @staticmethod
    def _start_size(resolution: int) -> int | None:
        for s0 in (7, 4):
            if resolution % s0 == 0 and resolution // s0 >= 2 and _is_power_of_two(resolution // s0):
                return s0
        return None

    @staticmethod
    def fits(resolution: int) -> bool:
        return resolution <= MAX_RESOLUTION and ConvNet._start_size(resolution) is not None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        h = self.upsample(self.project(z))  # (B, w_k, R, R)
        return torch.sigmoid(self.head(h))  # (B, C, R, R)


# ---------------------------------------------------------------------- ResNet
class _ResidualUp(nn.Module):
    """Pre-activation residual block that doubles the side (nearest upsampling).

    branch: BN → ReLU → up x2 → Conv3x3 → BN → ReLU → Conv3x3;  skip: Conv1x1 → up x2.
    (B, c_in, s, s) → (B, c_out, 2s, 2s). The 1x1 skip runs before upsampling: same
    result as after it (both are per-pixel), at a quarter of the cost.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        )
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.Upsample(scale_factor=2, mode="nearest"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.skip(x)


class ResNet(_Generator):
    """z → Linear → (w, s0, s0) → 4 residual x2 blocks → BN + ReLU + Conv3x3 → centre crop → sigmoid.

    Four x2 blocks multiply the side by 16, so the network starts at
    s0 = ⌈R/16⌉ and centre-crops its 16·s0 output to R: 32, 64, 128 need no crop,
    28 is the centre of a 32x32 output. Widths: ``width_schedule="halving"``
    gives block outputs w, w/2, w/4, w/8 (the paper's 512→256→128→64 with
    ``width=512``), ``"constant"`` keeps w throughout.
    Shapes: z (B, d) → (B, w, s0, s0) → (B, w_4, 16 s0, 16 s0) → (B, C, R, R).
    Cost per image O(Σ_i 9·(w_i w_{i+1} + w_{i+1}²)·(2^(i+1) s0)²): with halving widths
    the blocks cost about the same, with constant widths the last one dominates.
    Reference: pre-activation up-sampling blocks as in the SNGAN/BigGAN generators
    (Miyato et al. 2018; Brock et al. 2019).
    """

    NAME = "resnet"
    DEFAULT_WIDTH = 128  # 28x28x1: 0.48 M parameters; the paper's width=512 is slow on a CPU
    OPTIONS = ("width_schedule",)
    RULE = "every even size from 18 to 512 (16·⌈R/16⌉, centre-cropped)"

    def __init__(
        self,
        latent_dim: int,
        resolution: int = 28,
        channels: int = 1,
        width: int | None = None,
        width_schedule: str = "halving",
    ):
        super().__init__(latent_dim, resolution, channels, width, width_schedule=width_schedule)
        if width_schedule not in ("halving", "constant"):
            raise NeuroSQLError(f"width_schedule must be 'halving' or 'constant', got {width_schedule!r}")
        d, w, s0 = self.latent_dim, self.width, math.ceil(self.resolution / 16)
        outs = _halving(w, 4) if width_schedule == "halving" else [w] * 4
        ins = [w] + outs[:-1]
        self.project = nn.Sequential(nn.Linear(d, w * s0 * s0, bias=False), nn.Unflatten(1, (w, s0, s0)))
        self.blocks = nn.Sequential(*[_ResidualUp(c_in, c_out) for c_in, c_out in zip(ins, outs)])
        self.head = nn.Sequential(nn.BatchNorm2d(outs[-1]), nn.ReLU(), nn.Conv2d(outs[-1], self.channels, 3, padding=1))

    @staticmethod
    def fits(resolution: int) -> bool:
        # s0 >= 2 so that BatchNorm sees several values per channel even for a batch of one
        return resolution % 2 == 0 and 16 < resolution <= MAX_RESOLUTION

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        h = self.head(self.blocks(self.project(z)))  # (B, C, 16 s0, 16 s0)
        a = (h.shape[-1] - self.resolution) // 2
        return torch.sigmoid(h[..., a : a + self.resolution, a : a + self.resolution])  # (B, C, R, R)


# ------------------------------------------------------------------ FiLM U-Net
class _FiLMConv(nn.Module):
    """Conv3x3 → BatchNorm (no affine) → h·(1 + γ(z)) + β(z) → ReLU, with (γ, β) = Linear(z).

    (B, c_in, s, s), z (B, d) → (B, c_out, s, s). The FiLM bias plays the role of
    the usual BatchNorm affine, so the normalisation has none of its own.
    """

    def __init__(self, c_in: int, c_out: int, latent_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out, affine=False)
        self.film = nn.Linear(latent_dim, 2 * c_out)
        # γ, β start with std ≈ 0.5 for z ~ N(0, I): codes give distinct images from the
        # first step, and 1 + γ rarely changes sign (which would invert a channel)
        nn.init.normal_(self.film.weight, std=0.5 / math.sqrt(latent_dim))
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(z)[:, :, None, None].chunk(2, dim=1)  # (B, c_out, 1, 1) each
        return F.relu(self.norm(self.conv(h)) * (1 + gamma) + beta)


class _FiLMBlock(nn.Module):
    """Two FiLM convolutions at one resolution: (B, c_in, s, s) → (B, c_out, s, s)."""

    def __init__(self, c_in: int, c_out: int, latent_dim: int):
        super().__init__()
        self.first = _FiLMConv(c_in, c_out, latent_dim)
        self.second = _FiLMConv(c_out, c_out, latent_dim)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(h, z), z)


class UNet(_Generator):
    """U-Net on a learnable constant (w, R, R), modulated by z through FiLM at every level.

    Down path: levels at sides R, R/2, R/4 (average pooling between them) with
    widths w, 2w, 4w; up path: nearest x2 upsampling, concatenation with the
    down-path features of the same side, a FiLM block back to w_l; 3x3 head and
    sigmoid. The constant is the same for every sample: z is the only source of
    variation. Shapes: const (1, w, R, R) → (B, 4w, R/4, R/4) → (B, w, R, R) → (B, C, R, R).
    Cost per image ≈ 117·w²·R² multiply-adds, almost half of it at full resolution,
    which is why the default width is small.
    References: Ronneberger et al., U-Net (2015); Perez et al., FiLM (AAAI 2018).
    """

    NAME = "unet"
    DEFAULT_WIDTH = 16  # 28x28x1: about the convnet's compute (0.15 M parameters); 32 matches its size
    LEVELS = 3
    RULE = "every multiple of 4 from 16 to 512 (two halvings must be exact)"

    def __init__(self, latent_dim: int, resolution: int = 28, channels: int = 1, width: int | None = None):
        super().__init__(latent_dim, resolution, channels, width)
        d, R = self.latent_dim, self.resolution
        widths = [self.width * 2**level for level in range(self.LEVELS)]
        self.const = nn.Parameter(torch.randn(1, widths[0], R, R))
        self.down = nn.ModuleList(_FiLMBlock(c_in, c_out, d) for c_in, c_out in zip(widths[:1] + widths[:-1], widths))
        self.up = nn.ModuleList(
            _FiLMBlock(widths[level + 1] + widths[level], widths[level], d)
            for level in reversed(range(self.LEVELS - 1))
        )
        self.head = nn.Conv2d(widths[0], self.channels, 3, padding=1)

    @staticmethod
    def fits(resolution: int) -> bool:
        return resolution % 4 == 0 and 16 <= resolution <= MAX_RESOLUTION

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        h = self.const.expand(len(z), -1, -1, -1)  # (B, w, R, R)
        skips = []
        for level, block in enumerate(self.down):
            h = block(F.avg_pool2d(h, 2) if level else h, z)  # (B, w_l, R/2^l, R/2^l)
            skips.append(h)
        skips.pop()  # the bottleneck output is the up path's input, not a skip
        for block in self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), z)  # (B, w_l, R/2^l, R/2^l)
        return torch.sigmoid(self.head(h))  # (B, C, R, R)


# ----------------------------------------------------------------- Transformer
class Transformer(_Generator):
    """The transformer decoder on patchified z (App. L): z → Linear → T = (R/p)² tokens of width w,
    plus learned position embeddings → DEPTH pre-norm transformer blocks (self-attention over the
    tokens with HEADS heads, MLP 2w) → LayerNorm → Linear to the p·p·C pixels of each token's patch
    → patches folded into the image → sigmoid, with p = PATCH = 4.

    Shapes: z (B, d) → (B, T, w) → (B, T, p²C) → (B, C, R, R). Cost per image O(d·T·w +
    DEPTH·(T²·w + T·w²)): at 28 px, T = 49 tokens.
    """

    NAME = "transformer"
    DEFAULT_WIDTH = 64  # 28x28x1, d = 16: 0.2 M parameters, about the convnet's size
    PATCH = 4
    DEPTH = 4
    HEADS = 4
    RULE = "every multiple of 4 from 16 to 128 (4x4 patches, at most 1,024 tokens)"

    def __init__(self, latent_dim: int, resolution: int = 28, channels: int = 1, width: int | None = None):
        super().__init__(latent_dim, resolution, channels, width)
        if self.width % self.HEADS:
            raise NeuroSQLError(f"the transformer's width must be a multiple of {self.HEADS} (its heads), got {self.width}")
        w, p, side = self.width, self.PATCH, self.resolution // self.PATCH
        self.tokens = side * side
        self.project = nn.Linear(self.latent_dim, self.tokens * w)
        self.position = nn.Parameter(0.02 * torch.randn(1, self.tokens, w))
        layer = nn.TransformerEncoderLayer(w, self.HEADS, dim_feedforward=2 * w, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, self.DEPTH, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, p * p * self.channels)

    @staticmethod
    def fits(resolution: int) -> bool:
        return resolution % 4 == 0 and 16 <= resolution <= 128

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        B, p, C = len(z), self.PATCH, self.channels
        h = self.project(z).view(B, self.tokens, self.width) + self.position  # (B, T, w)
        h = self.head(self.norm(self.blocks(h)))  # (B, T, p·p·C)
        return torch.sigmoid(self.unpatchify(h, C, p))  # (B, C, R, R)

    @staticmethod
    def unpatchify(h: torch.Tensor, channels: int, patch: int) -> torch.Tensor:
        """Token t = i·s + j's values (c, a, b) to pixel (c, i·p + a, j·p + b): (B, s², p²C) → (B, C, s·p, s·p)."""
        B, T, _ = h.shape
        side = int(round(T**0.5))
        h = h.view(B, side, side, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)  # (B, C, s, p, s, p)
        return h.reshape(B, channels, side * patch, side * patch)


# -------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[_Generator]] = {cls.NAME: cls for cls in (ConvNet, ResNet, UNet, Transformer)}
GENERATORS = tuple(_REGISTRY)


def _lookup(name: str) -> type[_Generator]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise NeuroSQLError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)}")
    return _REGISTRY[name]


def build_generator(
    name: str, latent_dim: int, resolution: int = 28, channels: int = 1, width: int | None = None,
    volume: bool = False, **options
) -> nn.Module:
    """A fresh generator ``name`` mapping (B, latent_dim) codes to (B, channels, resolution, resolution),
    or with ``volume`` to (B, channels, R, R, R) volumes (:class:`ConvNet3D`).

    ``width`` is the base channel count, None for the backbone's default:
    convnet and resnet start at ``width`` channels and narrow as the side grows;
    the unet has ``width`` at full resolution and doubles it at each coarser
    level. ``options`` are backbone-specific (resnet: ``width_schedule``).
    ``build_generator(**g.config)`` rebuilds the architecture of ``g``.
    """
    if volume:
        return build_volume_generator(name, latent_dim, resolution, channels, width, **options)
    cls = _lookup(name)
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        valid = ", ".join(cls.OPTIONS) or "none"
        raise NeuroSQLError(f"unknown option(s) {', '.join(unknown)} for generator {name!r}; valid options: {valid}")
    return cls(latent_dim, resolution, channels, width, **options)


def supported_resolutions(name: str) -> tuple[int, ...]:
    """Every image side (<= MAX_RESOLUTION) the generator ``name`` produces.

    convnet: 4·2^k and 7·2^k (k >= 1); resnet: even sides from 18;
    unet: multiples of 4 from 16. All include 28, 32, 64 and 128.
    """
    cls = _lookup(name)
    return tuple(r for r in range(1, MAX_RESOLUTION + 1) if cls.fits(r))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (parameters with requires_grad) in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ------------------------------------------------------------------ volumes
class ConvNet3D(_Generator):
    """z → Linear → (w, s0, s0, s0) → k × [ConvT 4³/2 + BN + ReLU] → Conv 3³ → sigmoid.

    Shapes: z (B, d) → (B, w, s0³) → ... → (B, w/2^k, R³) → (B, C, R, R, R), with
    R = s0·2^k, s0 = 7 when 7 divides R (28 = 7·4) and 4 otherwise (16, 32, 64).
    Widths halve at each stage, floored at MIN_WIDTH. Cost per volume
    O(d·w·s0³ + Σ_i w_i·w_{i+1}·8·(s0 2^(i+1))³).
    """

    NAME = "convnet"
    DEFAULT_WIDTH = 64  # 32³, d = 16: 0.25 M parameters; a volume has 32× the voxels of a 32² image
    RULE = "4·2^k or 7·2^k voxels per side for k >= 1 (8, 14, 16, 28, 32, 56, 64, ...)"

    def __init__(self, latent_dim: int, resolution: int = 32, channels: int = 1, width: int | None = None):
        super().__init__(latent_dim, resolution, channels, width, volume=True)
        d, R, C = self.latent_dim, self.resolution, self.channels
        s0 = ConvNet._start_size(R)
        widths = _halving(self.width, int(math.log2(R // s0)) + 1)
        self.project = nn.Sequential(
            nn.Linear(d, widths[0] * s0**3, bias=False),
            nn.Unflatten(1, (widths[0], s0, s0, s0)),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        for c_in, c_out in zip(widths, widths[1:]):
            stages += [nn.ConvTranspose3d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU()]
        self.upsample = nn.Sequential(*stages)
        self.head = nn.Conv3d(widths[-1], C, 3, padding=1)

    fits = staticmethod(ConvNet.fits)  # the same sides as the 2-D ConvNet

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check_codes(z)
        h = self.upsample(self.project(z))  # (B, w_k, R, R, R)
        return torch.sigmoid(self.head(h))  # (B, C, R, R, R)


VOLUME_GENERATORS = {ConvNet3D.NAME: ConvNet3D}


def build_volume_generator(name: str, latent_dim: int, resolution: int, channels: int, width: int | None,
                           **options) -> nn.Module:
    """A fresh 3-D generator ``name`` mapping (B, latent_dim) codes to (B, channels, R, R, R)."""
    if name not in VOLUME_GENERATORS:
        raise NeuroSQLError(f"generator {name!r} has no 3-D version; for volumes use {', '.join(VOLUME_GENERATORS)}")
    if options:
        raise NeuroSQLError(f"unknown option(s) {', '.join(sorted(options))} for the 3-D generator {name!r}")
    return VOLUME_GENERATORS[name](latent_dim, resolution, channels, width)
