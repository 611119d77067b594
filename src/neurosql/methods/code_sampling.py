"""Sampling near the training codes, NeuroSQL's default sampler (:func:`kernel_draws`, a Gaussian
kernel density on the code bank), and class-aware sampling without an encoder: draws between a
class's training codes, kept when their nearest training codes vote for the class.

Every training image X_i has a code Ẑ_i and, when the data are labelled, a
label y_i. A draw z is given the label of the majority of its k nearest
training codes (:func:`neurosql.metrics.latent_labels.knn_label`, the same
vote that labels generated images for the downstream classifier), and
``sample(m, label=c)`` keeps draws voted c until m are kept, so no conditional
model is trained. The draws come from :func:`class_segment_draws`: points on
the segments between a code of class c and one of its nearest codes of class c.
Prior draws voted c (the first version) were images of c for only 45 % of them
on the embedded MNIST at d = 16, these draws 93 % (benchmarks/class_sampling.py): the lattice
orders codes by image similarity only loosely, so a prior draw's nearest codes
say little about the image G makes of it; G maps a training code, and the
segment to a neighbour of the same class, to images of that class.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch

from ..errors import NeuroSQLError
from ..metrics.latent_labels import knn_label

LABEL_K = 5  # neighbours in the vote, the downstream classifier's k
MAX_ROUNDS = 10  # rejection rounds before giving up on a class the model rarely generates
MAX_DRAWS_PER_ROUND = 200_000  # bounds the time of one round's vote (m·n·d)
SLACK = 1.25  # over-draw against an acceptance rate that is only an estimate
NN_BLOCK = 1 << 24  # distances held at once by nearest_distances (64 MB); all of them up to n = 4096
H_CODES = 4096  # codes whose nearest-code distance gives h; above that many, a fixed seeded subset of them
BANDWIDTHS = (1.0, 2 ** 0.25, 2 ** 0.5)  # factors of the kernel bandwidth h copy_guard tries before the prior
COPY_RATIO = 0.85  # draws are new when their copy ratio reaches this (the memorisation check's bar, 0.8, plus a margin)
GUARD_DRAWS = 128  # draws per candidate copy_guard tries, and training images it measures leave-one-out
GUARD_CHUNK = 4096  # training images it compares against at once


def check_labels(labels, n: int) -> np.ndarray:
    """One label per image, (n,), as a numpy array of integers, booleans or names: what a checkpoint can
    save and ``load`` read back (``weights_only``), so no dates, objects or NaN."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.shape != (n,):
        raise NeuroSQLError(f"labels must have shape ({n},), one per image; got {labels.shape}")
    if labels.dtype.kind not in "biuU":
        example = next(iter(labels.tolist()), None)
        raise NeuroSQLError(f"labels must be integers or names (str), got {type(example).__name__} values such as "
                            f"{example!r}; convert them, e.g. with str()")
    return labels


def resolve_label(label, classes) -> object:
    """The class in ``classes`` equal to ``label`` by value or by its text (``--label 3``)."""
    if classes is None:
        raise NeuroSQLError(
            "this model was trained without labels; fit it with labels=... (the CLI passes the data's labels)"
        )
    for c in classes:
        if c == label or str(c) == str(label):
            return c
    raise NeuroSQLError(f"unknown label {label!r}; this model knows the labels {', '.join(map(str, classes))}")


def sample_class_codes(
    draw: Callable[[int], torch.Tensor],
    codes: torch.Tensor,
    code_labels: np.ndarray,
    label,
    m: int,
    k: int = LABEL_K,
    max_rounds: int = MAX_ROUNDS,
) -> torch.Tensor:
    """m prior draws whose k nearest training codes vote for ``label``, in draw order.

    Problem: sample z ~ p(z | vote_k(z) = c), vote_k the majority label of the
    k codes nearest to z (L2), by rejection: draw from the prior, keep draws
    voted c. Each round draws (m − kept) / rate · 1.25 codes, rate the
    acceptance seen so far (at first the class's share of the training codes),
    at most 200,000 per round and ``max_rounds`` rounds; then an error says
    how rare the class is.
    ``draw(count)``: (count, d) prior draws from one seeded generator, so the
    result is reproducible. Shapes: codes (n, d), code_labels (n,) -> (m, d).
    Cost: O(draws · n · d) for the votes.
    """
    codes = codes.detach().cpu()
    code_labels = np.asarray(code_labels)
    share = float(np.mean(code_labels == label))
    if share == 0:
        raise NeuroSQLError(f"no training image has label {label}; sample another label")
    kept, drawn, accepted = [], 0, 0
    for _ in range(max_rounds):
        rate = accepted / drawn if accepted else share / (1 + drawn / len(code_labels))  # shrink when none came
        count = min(MAX_DRAWS_PER_ROUND, math.ceil((m - accepted) / rate * SLACK))
        z = draw(count)  # (count, d)
        keep = torch.as_tensor(knn_label(z, codes, code_labels, k=min(k, len(codes))) == label)
        kept.append(z[keep])
        drawn, accepted = drawn + count, accepted + int(keep.sum())
        if accepted >= m:
            return torch.cat(kept)[:m]
    raise NeuroSQLError(
        f"only {accepted} of {drawn} prior draws in {max_rounds} rounds were voted label {label} "
        f"(acceptance {accepted / drawn:.3%}); the model rarely generates it: ask for fewer samples"
    )


def kernel_bandwidth(codes: torch.Tensor) -> float:
    """h of :func:`kernel_draws`: the median distance from a code to its nearest other code, over
    every code up to H_CODES codes and over a fixed seeded subset of H_CODES above (each against all
    n): the exact median took 14 s at n = 3·10⁴ on a busy core, growing as n², and every sample()
    call paid it.
    Shapes: codes (n, d), n >= 1 (h = 1 for one code). O(min(n, H_CODES) n d) time."""
    codes = codes.detach().cpu()
    if len(codes) < 2:
        return 1.0
    rows = None
    if len(codes) > H_CODES:
        rows = torch.randperm(len(codes), generator=torch.Generator().manual_seed(0))[:H_CODES].sort().values
    return float(nearest_distances(codes, rows).median())


def kernel_draws(codes: torch.Tensor, generator: torch.Generator | None,
                 h: float | None = None) -> Callable[..., torch.Tensor]:
    """A ``draw(count, bandwidth=1)`` from a Gaussian kernel density on the training codes:
    z = Ẑ_i + (f h / √d) ε, i uniform, ε ~ N(0, I_d), h the median distance from a code to its nearest
    other code (:func:`kernel_bandwidth`, unless given), f the ``bandwidth`` factor
    (:func:`copy_guard` picks it after training), all from ``generator``.

    G is fitted at the training codes, so it draws clean images near them, whereas a prior draw in
    d ≥ 8 dimensions lands far from every one of a few hundred codes, where G was never trained
    (mottled, broken images). A typical step of length h reaches about as far as the nearest
    other code, so draws are not copies of training images (on 64-px brain slices at d = 16 the
    samples' median distance to their nearest training image was 0.90 of that of held-out images;
    draws on the segments between neighbouring codes, or at h / 2, gave 0.32 and 0.52).
    Shapes: codes (n, d) → draw(count) (count, d). Each draw O(d).
    """
    codes = codes.detach().cpu()
    n, d = codes.shape
    h = kernel_bandwidth(codes) if h is None else h

    def draw(count: int, bandwidth: float = 1.0) -> torch.Tensor:
        i = torch.randint(n, (count,), generator=generator)
        return codes[i] + bandwidth * h / math.sqrt(d) * torch.randn(count, d, generator=generator)

    return draw


def copy_guard(codes: torch.Tensor, images, decode: Callable, cost: Callable, prior: Callable,
               seed: int, h: float | None = None) -> tuple[float | None, float]:
    """Where sample() draws so that its images are not copies of training images: the first factor
    f of BANDWIDTHS whose kernel draws (:func:`kernel_draws`) reach COPY_RATIO, else the prior
    (f = None) if its draws do, else whichever came closest; returns f and its copy ratio.

    Copy ratio: the median cost ℓ from a draw's image to its nearest training image over the median
    from a training image to its nearest other one. The leave-one-out distance stands in for
    held-out images, which small sets lack: on faces@32 (80 images, where draws at h copied:
    memorisation ratio 0.70) and gray-patches@64 it was 1.0× and 1.14× the held-out ratio at every f
    tried, but 1.33× on one seed (1.01 against 0.76), so the guard starts at h rather than at the
    edge of copying: trying h/2 and h/√2 first took h/√2 on the grey patches and halved their pFID
    (3.06 to 1.81 over three seeds) but made one seed's samples copies. Every f scales the same
    draws (the same codes and ε), so two factors' ratios differ by the factor, not by sampling
    noise. Widening h further did not pay: on the faces, f = 2.4–2.8 reached ratios 0.81–0.92 but
    its draws leave the shell the codes lie on (pFID 0.92–1.22 over two seeds), while the prior's
    draws were not copies either (0.85–0.88) at pFID 0.59–0.62.
    ``images`` (n, ...) are aligned with ``codes`` (a tensor or ``LazyImages``); ``decode(z)`` gives
    images, ``cost(a, b)`` the (|a|, |b|) matrix of ℓ, ``prior(count, generator)`` prior codes,
    ``h`` the kernel's bandwidth when already known (:func:`kernel_bandwidth`). GUARD_DRAWS draws
    per candidate and as many seeded training images are compared with all n training images:
    (1 + candidates tried) GUARD_DRAWS n costs.
    """
    generator = torch.Generator().manual_seed(seed)
    held = torch.randperm(len(codes), generator=generator)[:GUARD_DRAWS].sort().values
    leave_one_out = _nearest_cost(images[held], images, cost, exclude=held).median()
    draw = kernel_draws(codes, generator, h)  # h once, not per factor
    state = generator.get_state()  # every factor's draws start here: the same codes and ε, scaled
    best = None
    for f in (*BANDWIDTHS, None):
        if f is None:
            z = prior(GUARD_DRAWS, generator)
        else:
            generator.set_state(state)
            z = draw(GUARD_DRAWS, f)
        ratio = float(_nearest_cost(decode(z), images, cost).median() / leave_one_out)
        if ratio >= COPY_RATIO:
            return f, ratio
        best = max(best or (f, ratio), (f, ratio), key=lambda candidate: candidate[1])
    return best


def _nearest_cost(x, images, cost: Callable, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Each x's least cost to one of ``images``, read GUARD_CHUNK at a time; ``exclude``: per x, the
    index of an image to skip (x itself)."""
    best = torch.full((len(x),), math.inf)
    for start in range(0, len(images), GUARD_CHUNK):
        C = cost(x, images[torch.arange(start, min(start + GUARD_CHUNK, len(images)))]).cpu()  # (|x|, chunk)
        if exclude is not None:
            rows = torch.nonzero((exclude >= start) & (exclude < start + C.shape[1])).flatten()
            C[rows, exclude[rows] - start] = math.inf
        best = torch.minimum(best, C.min(dim=1).values)
    return best


def nearest_distances(codes: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Distance from each code (or each of ``codes[rows]``) to its nearest other code:
    codes (n, d), n >= 2 → (n,) or (len(rows),). Blocks of rows against all codes, at most NN_BLOCK
    distances at once: O(rows n d) time and O(n) memory, where the whole n × n matrix would take
    40 GB at n = 10⁵ (Algorithm 2's sizes)."""
    n = len(codes)
    rows = torch.arange(n) if rows is None else rows
    block = max(1, NN_BLOCK // n)
    nearest = []
    for start in range(0, len(rows), block):
        own = rows[start : start + block]
        distance = torch.cdist(codes[own], codes)  # (block, n)
        distance[torch.arange(len(own)), own] = math.inf  # each code's distance to itself
        nearest.append(distance.min(dim=1).values)
    return torch.cat(nearest)


def class_segment_draws(codes: torch.Tensor, code_labels: np.ndarray, label, generator: torch.Generator | None,
                        k: int = LABEL_K) -> Callable[[int], torch.Tensor]:
    """A ``draw(count)`` for :func:`sample_class_codes`: z = Ẑ_i + u (Ẑ_j − Ẑ_i), with i a uniform
    training code of class ``label``, j a uniform one of the k codes of that class nearest to Ẑ_i
    (itself excluded; itself when the class has one code), u ~ U(0, 1), all from ``generator``.

    Shapes: codes (n, d), code_labels (n,) → draw(count) (count, d). Set-up O(n_c² d) for the
    class's n_c codes; each draw O(d).
    """
    own = codes.detach().cpu()[torch.as_tensor(np.asarray(code_labels) == label)]  # (n_c, d)
    if len(own) == 0:
        raise NeuroSQLError(f"no training image has label {label}; sample another label")
    distance = torch.cdist(own, own)  # (n_c, n_c)
    distance.fill_diagonal_(math.inf if len(own) > 1 else 0.0)
    neighbours = distance.topk(min(k, max(len(own) - 1, 1)), largest=False).indices  # (n_c, k)

    def draw(count: int) -> torch.Tensor:
        i = torch.randint(len(own), (count,), generator=generator)
        j = neighbours[i, torch.randint(neighbours.shape[1], (count,), generator=generator)]
        u = torch.rand(count, 1, generator=generator)
        return own[i] + u * (own[j] - own[i])

    return draw


def class_codes(codes: torch.Tensor, code_labels: np.ndarray, label, m: int, seed: int | None) -> torch.Tensor:
    """m codes (m, d) of class ``label``: :func:`class_segment_draws` kept by the vote of
    :func:`sample_class_codes`; a seed makes them reproducible."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return sample_class_codes(class_segment_draws(codes, code_labels, label, generator), codes, code_labels, label, m)


def samples_by_class(model, per_class: int = 8, seed: int = 0, max_classes: int = 16) -> torch.Tensor:
    """``per_class`` samples of each of the first ``max_classes`` classes, one class per row.

    A class the model too rarely generates gets a blank row and a warning
    rather than failing the whole picture. Shape (rows·per_class, C, H, W).
    """
    rows = []
    for c in model.classes_[:max_classes]:
        try:
            rows.append(model.sample(per_class, seed=seed, label=c))
        except NeuroSQLError as err:
            warnings.warn(f"no sample row for label {c}: {err}", stacklevel=2)
            rows.append(torch.zeros(per_class, *model.image_shape_))
    return torch.cat(rows)
