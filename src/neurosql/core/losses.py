"""Image losses: SSIM, L1, L2 and the paper's SSIM+L1, per sample and pairwise.

One loss serves both steps of NeuroSQL (paper §2.4 and App. L): the generator
regression uses it per sample, ``loss(X_i, G(Z_i))``, and the assignment uses
it for every pair, the cost matrix ``C[i, k] = loss(X_i, G(Q_k))``. Both forms
evaluate the same SSIM definition, written once below.

SSIM (Wang, Bovik, Sheikh & Simoncelli, 2004, "Image quality assessment: from
error visibility to structural similarity", IEEE TIP 13(4)): with a normalised
11x11 Gaussian window w (sigma 1.5), local statistics at each position p where
the whole window fits inside the image ("valid" positions, no padding)

    mu_x(p)  = sum_q w(p-q) x(q)
    var_x(p) = sum_q w(p-q) x(q)^2 - mu_x(p)^2         (population moments)
    cov(p)   = sum_q w(p-q) x(q) y(q) - mu_x(p) mu_y(p)

    SSIM(p)  = (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))

with C1 = (0.01 L)^2, C2 = (0.03 L)^2 and data range L = 1; the SSIM of an
image is the mean of SSIM(p) over channels and valid positions. This matches
``pytorch_msssim.ssim(..., data_range=1)`` and scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``.

The pairwise SSIM needs, for every pair and position, the covariance; the
means and variances depend on one image only. The window is separable,
w = g g^T, so with the horizontal means h_x(r, c) = sum_s g_s x(r, c+s) the
law of total covariance (rows as the conditioning variable) splits it into
two 1-D parts, each on centred values:

    2 cov(r, c) = sum_t g_t sum_s 2 g_s (x - h_x)(y - h_y)(r+t, c+s)       [x, y at (r+t, c+s); h at (r+t, c)]
                + sum_t 2 g_t (h_x(r+t, c) - mu_x(r, c)) (h_y(r+t, c) - mu_y(r, c))

(the cross terms vanish because sum_s g_s (x(r+t, c+s) - h_x(r+t, c)) = 0).
The inner sum over s is shared by the 11 output rows that see input row
r+t, so a pair costs 11 (H W' + 2 H' W') multiply-adds per channel instead of
121 H' W' (12.7k instead of 39.2k for 28x28), and centring first avoids the
float32 cancellation of E[xy] - mu_x mu_y. With y = x the same two parts
give 2 var_x, so the pairwise paths never form E[x^2] - mu^2 either (the
per-sample :func:`ssim` does: it is cheaper and differentiable, and off by up
to ~3e-5 on nearly flat bright windows). On the CPU a small C kernel,
compiled once per machine, evaluates this (:func:`_compiled_cost`); elsewhere,
or without a C compiler, batched GEMMs over whole windows do
(:func:`_pairwise_ssim`).
"""

from __future__ import annotations

import ctypes
import math
from concurrent.futures import ThreadPoolExecutor

import torch

from . import losses3d, native
from .ssim_parts import C1, C2, LOSSES, WINDOW, _band, _check_loss, _check_pair, _gaussian_window  # noqa: F401 (LOSSES: the names callers import from here)
from ..errors import NeuroSQLError

CHUNK_BUDGET = 2**24  # floats of window features pairwise_cost may hold (64 MB in float32)
TILE = 2**19  # floats per (positions, rows, cols) tile, 2 MB: big enough for fast GEMMs, small enough for cache
ROWS_PER_TILE = 128  # default rows of x per C kernel call; columns are split evenly between threads, at most
COLS_PER_TILE = 512  # this many per call, so a call's scratch, (rows + cols) * ~22 H floats, stays in L3


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Valid Gaussian filtering per channel, (n, C, H, W) -> (n, C, H-10, W-10).

    w = g g^T is separable: the result is B_H x B_W^T with banded matrices
    B_H (H-10, H) and B_W (W-10, W) whose rows are shifted copies of g. Two
    matrix products run several times faster on CPUs than depthwise conv2d
    (measured 6-8x for 28x28 and 64x64 batches) despite the zeros they multiply.
    """
    g = _gaussian_window(x.device, x.dtype)
    return _band(x.shape[2], g) @ (x @ _band(x.shape[3], g).T)  # (n, C, H, W') then (n, C, H', W')


def _local_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Local means and population variances under the window, each (n, C, H-10, W-10)."""
    mu = _blur(x)
    return mu, _blur(x * x) - mu * mu


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample SSIM of x[i] and y[i] (Wang et al., 2004), differentiable.

    Problem: SSIM(x_i, y_i) = mean over channels and valid positions p of the
    SSIM map in the module docstring.
    Shapes: x, y (n, C, H, W) floats in [0, 1], H, W >= 11 -> (n,).
    Complexity: O(n C H W * 22) for the five separable filterings.
    """
    _check_pair(x, y, dims=4, same_batch=True, window=WINDOW)
    mu_x, var_x = _local_moments(x)  # (n, C, H', W')
    mu_y, var_y = _local_moments(y)
    cov = _blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + C1) * (2 * cov + C2)
    den = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
    return (num / den).flatten(1).mean(dim=1)


# BT.601 luma and chroma (scikit-image's rgb2yuv): Y in [0, 1] keeps SSIM's constants C1, C2 at their
# data range, and U, V are the blue and red differences, zero on every grey pixel.
YUV_FROM_RGB = ((0.299, 0.587, 0.114),
                (-0.14714119, -0.28886916, 0.43601035),
                (0.61497538, -0.51496512, -0.10001026))
CHROMA_WEIGHT = 1.0  # default weight of U and V against Y in the L1 half of ssim_l1_yuv


def to_yuv(x: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1] -> Y, U, V (BT.601): (n, 3, H, W) -> (n, 3, H, W)."""
    if x.shape[1] != 3:
        raise NeuroSQLError(f"loss ssim_l1_yuv needs RGB images (3 channels), got {x.shape[1]}; use --loss ssim_l1")
    return torch.einsum("ck,nkhw->nchw", x.new_tensor(YUV_FROM_RGB), x)


def _luma_and_weighted(x: torch.Tensor, chroma_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The luma channel (n, 1, H, W) SSIM compares, and Y, w U, w V (n, 3, H, W) for the L1 half."""
    yuv = to_yuv(x)
    return yuv[:, :1], yuv * yuv.new_tensor([1.0, chroma_weight, chroma_weight])[:, None, None]


def loss_per_sample(
    x: torch.Tensor, y: torch.Tensor, loss: str = "ssim_l1", chroma_weight: float = CHROMA_WEIGHT
) -> torch.Tensor:
    """Per-sample loss between x[i] and y[i], differentiable (the generator step uses its mean).

    Problem: for d = C H W pixels,
        l1:      mean_q |x_i(q) - y_i(q)|
        l2:      mean_q (x_i(q) - y_i(q))^2
        ssim:    1 - SSIM(x_i, y_i)
        ssim_l1: 1/2 (1 - SSIM(x_i, y_i)) + 1/2 l1        (paper App. L)
        ssim_l1_yuv (RGB only), with x = (Y, U, V) in BT.601 and w = chroma_weight:
                 1/2 (1 - SSIM(Y_x, Y_y)) + 1/2 mean_q (|dY| + w |dU| + w |dV|)(q)
    The paper's ssim_l1 compares each RGB channel's structure on its own and
    leaves colour to a per-channel luminance term and half an L1; the YUV loss
    gives SSIM the luma alone and the L1 the chroma, so colour is fitted like
    L1 fits it (README, "Colour").
    Shapes: x, y (n, C, H, W) -> (n,).
    Complexity: O(n d) (O(n d * 22) with SSIM).
    Volumes (n, C, D, H, W) use the 3-D SSIM of :mod:`neurosql.core.losses3d`.
    """
    _check_loss(loss)
    if loss == "ssim_l1_yuv":
        _check_pair(x, y, dims=4, same_batch=True, window=WINDOW)
        (lx, wx), (ly, wy) = _luma_and_weighted(x, chroma_weight), _luma_and_weighted(y, chroma_weight)
        return 0.5 * (1 - ssim(lx, ly)) + 0.5 * (wx - wy).abs().flatten(1).mean(dim=1)
    structural = ssim
    if x.dim() == 5:
        _check_pair(x, y, dims=5, same_batch=True, window=losses3d.WINDOW)
        structural = losses3d.ssim
    else:
        _check_pair(x, y, dims=4, same_batch=True, window=WINDOW)
    if loss == "l2":
        return (x - y).pow(2).flatten(1).mean(dim=1)
    if loss == "ssim":
        return 1 - structural(x, y)
    l1 = (x - y).abs().flatten(1).mean(dim=1)
    return l1 if loss == "l1" else 0.5 * (1 - structural(x, y)) + 0.5 * l1


@torch.no_grad()
def pairwise_cost(
    x: torch.Tensor, y: torch.Tensor, loss: str = "ssim_l1", chunk_size: int | None = None,
    chroma_weight: float = CHROMA_WEIGHT,
) -> torch.Tensor:
    """The cost matrix C[i, k] = loss(x[i], y[k]) for all pairs, without gradients.

    Problem: the assignment cost of paper §2.4, with the losses of
    :func:`loss_per_sample`; row i of C equals ``loss_per_sample`` of x[i]
    against every y[k], up to float32 rounding (closer to the exact value on
    flat windows: the variances are centred, see the module docstring).
    Shapes: x (n, C, H, W), y (m, C, H, W) -> (n, m) float32 on x's device
    (y is moved there).
    Complexity: L1 and L2 take O(n m d) for d = C H W. SSIM takes, on the
    CPU, 11 n m C (H W' + 2 H' W') multiply-adds in the compiled separable
    kernel (module docstring) and elsewhere 2 n m C P 122 flops of dense
    matrix products (see :func:`_pairwise_ssim`), for H' = H-10, W' = W-10
    and P = H' W' valid positions. ssim_l1_yuv: the SSIM of one channel (Y)
    and the L1 of three, so under ssim_l1's cost for RGB.
    Memory: never n m d floats. Besides the (n, m) result, the CPU kernel
    copies the inputs and their local means (under 2 (n + m) d floats) and
    each thread holds (rows + columns of its tile) * (11 (H + H') + 3 H')
    floats of scratch; the GEMM path holds at most CHUNK_BUDGET floats of window
    features (or one output row's worth, (W-10) * 122 * (n + m), if that is
    more) and four tiles of TILE floats.

    chunk_size: rows of x and columns of y per tile; None picks cache-sized tiles.
    Volumes (n, C, D, H, W) go to :func:`neurosql.core.losses3d.pairwise_cost`.
    """
    _check_loss(loss)
    if x.dim() == 5:

        return losses3d.pairwise_cost(x, y, loss)
    _check_pair(x, y, dims=4, same_batch=False, window=WINDOW)
    if chunk_size is not None and chunk_size < 1:
        raise NeuroSQLError(f"chunk_size must be a positive number of rows, got {chunk_size}; pass e.g. 256 or None")
    x = x.float()
    y = y.to(device=x.device, dtype=torch.float32)
    if loss == "l2":
        return _pairwise_l2(x, y)
    if loss == "ssim_l1_yuv":  # one SSIM channel instead of three: cheaper than ssim_l1
        (lx, wx), (ly, wy) = _luma_and_weighted(x, chroma_weight), _luma_and_weighted(y, chroma_weight)
        return pairwise_cost(lx, ly, "ssim", chunk_size).add_(pairwise_cost(wx, wy, "l1", chunk_size)).mul_(0.5)
    kernel = native.kernel() if x.device.type == "cpu" else None
    if kernel is not None:
        return _compiled_cost(x, y, loss, chunk_size, kernel)
    if loss == "ssim":
        return 1 - _pairwise_ssim(x, y, chunk_size)
    l1 = torch.cdist(x.flatten(1), y.flatten(1), p=1) / x[0].numel()  # (n, m)
    return l1 if loss == "l1" else 0.5 * (1 - _pairwise_ssim(x, y, chunk_size)) + 0.5 * l1


def _pairwise_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared differences (n, m) by |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one GEMM.

    Centring both sets on y's mean image first keeps the norms small, so the
    float32 cancellation in the identity stays far below 1e-6 per pixel.
    """
    centre = y.mean(dim=0, keepdim=True)
    a = (x - centre).flatten(1)  # (n, d)
    b = (y - centre).flatten(1)  # (m, d)
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T  # (n, m)
    return d2.clamp_min_(0) / a.shape[1]


# The C kernel: plain C with GCC/Clang vector extensions, 16-float vectors that the
# compiler maps onto whatever -march=native offers. torch has no fused kernel
# for this (the element-wise SSIM after each GEMM dominated, and torch.cdist(p=1)
# runs at a few Gflop/s), and a C compiler is on every machine this runs on;
# without one, pairwise_cost falls back to the GEMM path.
def _round_up(v: int, k: int) -> int:
    return -(-v // k) * k


def _rows_padded(t: torch.Tensor, rows: int) -> torch.Tensor:
    """t (n, ...) contiguous with zero rows appended up to `rows`, the kernel's register blocks."""
    out = t.new_zeros(rows, *t.shape[1:])
    out[: len(t)] = t
    return out


def _columns_last(t: torch.Tensor, cols: int) -> torch.Tensor:
    """t (m, ...) -> (..., cols) with the batch last, zero-padded, so the kernel loads 16 columns at once."""
    out = t.new_zeros(*t.shape[1:], cols)
    out[..., : len(t)] = t.movedim(0, -1)
    return out


def _compiled_cost(
    x: torch.Tensor, y: torch.Tensor, loss: str, chunk_size: int | None, kernel: ctypes.CDLL
) -> torch.Tensor:
    """pairwise_cost for "l1", "ssim" and "ssim_l1" on the CPU with the C kernel, in tiles over threads.

    SSIM: the separable covariance of the module docstring, strip by strip
    (one output column of one channel): per strip the kernel centres the
    windows of the tile's rows and columns once, then for each block of
    native.ROW_BLOCK x kernel.col_block() pairs keeps the horizontal sums of the last 11
    input rows in a ring and finishes each output row with its vertical sums
    and the SSIM quotient, all in registers. L1: sum_q |x_i(q) - y_k(q)| on
    the same blocks. Zero padding rows and columns are harmless (every SSIM
    denominator is at least C1 C2) and cut off at the end.
    Shapes: x (n, C, H, W), y (m, C, H, W) float32 on the CPU -> (n, m).
    Complexity: 11 n m C (H W' + 2 H' W') multiply-adds and n m C H' W'
    divisions for SSIM, n m d for L1; threads: torch.get_num_threads().
    """
    n, C, H, W = x.shape
    m, d = len(y), C * H * W
    threads = torch.get_num_threads()
    col_block = kernel.col_block()  # 16 or 32 columns, by the CPU's vector width
    rows, cols = _round_up(n, native.ROW_BLOCK), _round_up(m, col_block)
    a = _round_up(chunk_size or ROWS_PER_TILE, native.ROW_BLOCK)  # rows of x per call
    b = _round_up(chunk_size or min(COLS_PER_TILE, -(-cols // threads)), col_block)  # columns of y per call
    xp, yp = _rows_padded(x, rows), _columns_last(y, cols)  # (rows, C, H, W), (C, H, W, cols)
    sums = {}
    if loss != "ssim":
        sums["l1"] = torch.zeros(rows, cols)
    if loss != "l1":
        sums["ssim"] = torch.zeros(rows, cols)
        mx, my = _rows_padded(_blur(x), rows), _columns_last(_blur(y), cols)  # (rows, C, H', W'), (C, H', W', cols)
        g = _gaussian_window(x.device, x.dtype)  # (11,)
        r = (2 * g).sqrt()

    def tile(i: int, k: int) -> None:
        a_, k1 = min(a, rows - i), min(k + b, cols)
        if "l1" in sums:
            kernel.l1_sums(xp[i].data_ptr(), a_, d, yp.data_ptr(), cols, k, k1, sums["l1"][i].data_ptr(), cols)
        if "ssim" in sums:
            pointers = (xp[i], mx[i], yp, my, g, r, sums["ssim"][i])
            xp_, mx_, yp_, my_, g_, r_, out = (t.data_ptr() for t in pointers)
            if kernel.ssim_sums(xp_, mx_, a_, yp_, my_, cols, k, k1, C, H, W, g_, r_, C1, C2, out, cols):
                raise MemoryError(f"no memory for the SSIM kernel's scratch; pass a smaller chunk_size than {a}")

    with ThreadPoolExecutor(threads) as pool:  # ctypes releases the GIL during each call
        list(pool.map(lambda ik: tile(*ik), [(i, k) for i in range(0, rows, a) for k in range(0, cols, b)]))
    cost = torch.zeros(n, m)
    if "l1" in sums:
        cost += sums["l1"][:n, :m] / d
    if "ssim" in sums:
        cost += 1 - sums["ssim"][:n, :m] / (C * (H - WINDOW + 1) * (W - WINDOW + 1))
    return cost if loss != "ssim_l1" else cost.mul_(0.5)


def _window_features(t: torch.Tensor, mu: torch.Tensor, rows: slice) -> torch.Tensor:
    """Centred, weighted windows at the valid positions of `rows`, plus a constant.

    Feature j < 121 of position p is sqrt(2 w(p-q_j)) (t(q_j) - mu(p)); feature
    121 is sqrt(C2), so that an inner product of two feature vectors is
    2 cov + C2, the second factor of the SSIM numerator, with no extra pass.
    t (H, W, n) one channel with the batch last, mu (H', W', n) its local means
    -> (h W', 122, n) for the h output rows in `rows`. With the batch last,
    every window is a strided view whose inner dimension is contiguous.
    """
    n = t.shape[-1]
    g = _gaussian_window(t.device, t.dtype)
    sqrt_2w = (2 * torch.outer(g, g)).sqrt()  # (11, 11)
    win = t[rows.start : rows.stop + WINDOW - 1].unfold(0, WINDOW, 1).unfold(1, WINDOW, 1)  # (h, W', n, 11, 11)
    win = win.permute(0, 1, 3, 4, 2)  # (h, W', 11, 11, n)
    f = torch.empty(*win.shape[:2], WINDOW * WINDOW + 1, n, device=t.device, dtype=t.dtype)  # (h, W', 122, n)
    f[:, :, -1] = math.sqrt(C2)
    # writing into f directly: left to itself, sub would copy win's permuted strides
    centred = f[:, :, :-1].view(win.shape)  # (h, W', 11, 11, n)
    torch.sub(win, mu[rows, :, None, None, :], out=centred).mul_(sqrt_2w[:, :, None])
    return f.view(-1, WINDOW * WINDOW + 1, n)


def _pairwise_ssim(x: torch.Tensor, y: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """SSIM of every pair, S[i, k] = SSIM(x[i], y[k]), as batched GEMMs over the windows.

    Problem: the pairwise version of the SSIM map. Means and variances depend on
    one image only, so they are filtered once (n + m filterings). The covariance
    of a pair at position p is an inner product of centred windows,
        2 cov_ik(p) = sum_q [sqrt(2 w(p-q)) (x_i(q) - mu_x_i(p))] [sqrt(2 w(p-q)) (y_k(q) - mu_y_k(p))],
    so for each position all pairs come from one (n x 122) @ (122 x m) GEMM
    (:func:`_window_features`; centring before the product avoids the float32
    cancellation of E[xy] - mu_x mu_y). The variances are the squared norms
    of the same centred windows, for the same reason. The rest of the SSIM
    map is element-wise on cache-sized tiles, summed over positions in place.
    Shapes: x (n, C, H, W), y (m, C, H, W) float32 -> (n, m).
    Complexity: 2 n m C P 122 flops in GEMMs plus about 6 n m C P element-wise
    operations, for P = (H-10)(W-10) positions; the (n + m) C P 122 window
    features are built once, in groups of output rows within CHUNK_BUDGET.
    """
    n, C, H, W = x.shape
    m = y.shape[0]
    Hp, Wp = H - WINDOW + 1, W - WINDOW + 1
    mu_x, mu_y = _blur(x), _blur(y)  # (n|m, C, H', W')
    # the SSIM denominator is (u_x + u_y)(v_x + v_y): split C1 and C2 between the two images
    stats_x = torch.stack([mu_x, mu_x * mu_x + C1 / 2])  # (2, n, C, H', W') mu, u
    stats_y = torch.stack([mu_y, mu_y * mu_y + C1 / 2])  # (2, m, C, H', W')
    # batch last, for _window_features
    xt, yt = x.permute(1, 2, 3, 0).contiguous(), y.permute(1, 2, 3, 0).contiguous()  # (C, H, W, n|m)
    stats_x = stats_x.permute(0, 2, 3, 4, 1).contiguous()  # (2, C, H', W', n)
    stats_y = stats_y.permute(0, 2, 3, 4, 1).contiguous()  # (2, C, H', W', m)

    rows_per_group = max(1, min(Hp, CHUNK_BUDGET // (Wp * (WINDOW * WINDOW + 1) * (n + m))))
    b = min(m, chunk_size or 1024)  # columns per tile
    a = min(n, chunk_size or max(1, TILE // b))  # rows per tile
    s = max(1, TILE // (a * b))  # positions per tile
    total = torch.zeros(n, m, device=x.device)  # (n, m) sum of the SSIM map over positions
    for c in range(C):
        for r0 in range(0, Hp, rows_per_group):
            rows = slice(r0, min(Hp, r0 + rows_per_group))
            fx = _window_features(xt[c], stats_x[0, c], rows)  # (g, 122, n)
            fy = _window_features(yt[c], stats_y[0, c], rows)  # (g, 122, m)
            # |f|^2 / 2 = var + C2 / 2, as the constant feature is sqrt(C2)
            vx, vy = (torch.linalg.vector_norm(f, dim=1).square_().div_(2)[None] for f in (fx, fy))  # (1, g, n|m)
            sx = torch.cat([stats_x[:, c, rows].reshape(2, -1, n), vx])  # (3, g, n) mu, u, v
            sy = torch.cat([stats_y[:, c, rows].reshape(2, -1, m), vy])  # (3, g, m)
            for i in range(0, n, a):
                for k in range(0, m, b):
                    I, J = slice(i, i + a), slice(k, k + b)
                    total[I, J] += _ssim_tile(fx[:, :, I], fy[:, :, J], sx[:, :, I], sy[:, :, J], s)
            del fx, fy  # free this group's features before the next group's are built
    return total.div_(C * Hp * Wp)


def _ssim_tile(fx, fy, sx, sy, s: int) -> torch.Tensor:
    """The SSIM map of a x b pairs summed over g positions, taken s at a time: (a, b).

    fx (g, 122, a), fy (g, 122, b) window features; sx (3, g, a), sy (3, g, b)
    the means mu and the denominator halves u, v. Every pass writes into one of
    four (s, a, b) buffers: they stay in cache, and a fresh ~1 MB tensor per
    pass would be a fresh mmap with page faults on this machine (~0.5 ms each).
    """
    s = min(s, fx.shape[0])
    acc, num, den, tmp = fx.new_zeros(4, s, fx.shape[2], fy.shape[2])  # (s, a, b) each
    c1 = fx.new_tensor(C1)
    for p in range(0, fx.shape[0], s):
        G = slice(p, p + s)
        (mx, ux, vx), (my, uy, vy) = sx[:, G, :, None], sy[:, G, None, :]  # (s', a, 1), (s', 1, b)
        s_ = mx.shape[0]
        torch.bmm(fx[G].transpose(1, 2), fy[G], out=num[:s_])  # 2 cov + C2
        num[:s_].mul_(torch.addcmul(c1, mx, my, value=2, out=tmp[:s_]))  # * (2 mu_x mu_y + C1)
        # (mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)
        torch.add(ux, uy, out=den[:s_]).mul_(torch.add(vx, vy, out=tmp[:s_]))
        acc[:s_].addcdiv_(num[:s_], den[:s_])
    return acc.sum(dim=0)
