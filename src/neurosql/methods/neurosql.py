"""NeuroSQL, the paper's method: fit a generator by quantile assignment (§2.4,
Algorithm 1, or Algorithm 2 with mini-batch assignment), then sample, encode and
reconstruct. The epoch loop, optimiser, checkpoints and data-parallel processes
are the engine's (:mod:`neurosql.engine.trainer`); the code bank and the two algorithms are
:mod:`neurosql.core.code_bank` and :mod:`neurosql.core.algorithms`; this file wires them to G and ℓ.

Symbols: ``Q`` lattice (``lattice_.points``), ``Ẑ`` codes (``codes_``),
``π`` assignment (``perm_``), ``C`` cost, ``ρ`` momentum, ``K`` assign_every.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from .code_sampling import (
    COPY_RATIO, check_labels, class_codes, copy_guard, kernel_bandwidth, kernel_draws, resolve_label,
)
from ..core.assignment import ASSIGNMENTS, assign, exact_solution
from ..core.generators import build_generator
from ..core.algorithms import algorithm1_round, algorithm2_step
from ..core.code_bank import CodeBank, initial_assignment
from ..core.lattice import LATTICES, make_lattice
from ..core.losses import LOSSES, loss_per_sample, pairwise_cost
from ..data import check_images, check_lazy_images
from ..errors import NeuroSQLError
from ..engine.config import LatentGeneratorConfig, option
from ..engine.trainer import start_training
from ..engine.training import derived_seed
from .auto_batch import M_AUTO, N_AUTO, resolve_assign_batch
from .latent_generator import LatentGenerator
from .latents import check_count, check_refinement, optimise_latents

INITS = ("pca", "random")
SUBSETS = ("held", "random")  # Alg. 2's lattice subset K of a batch
SAMPLERS = ("codes", "prior")  # where sample() draws z: between training codes, or the paper's prior
VAL_LATTICE = 4096  # lattice points behind the validation loss (bounded for large n)
RGB_COLOUR_WARMUP = 0.25  # automatic colour warm-up of RGB images (README, Colour: 0.25 beat 0.5 on three colour
                          # sets over three seeds, benchmarks/small_data_colour.md)
VOLUME_CODE_NOISE = 0.25  # automatic code noise of volumes (README, 3-D volumes: samples with both ventricles
                          # rose from 64-72 % to 81-86 % over three seeds on the 32³ phantom heads)


@dataclass
class NeuroSQLConfig(LatentGeneratorConfig):
    """Every NeuroSQL hyper-parameter, with the paper's defaults (App. I, L); the
    budget, backbone and loss fields are shared with the baselines."""

    lattice: str = option("sobol_gaussian", "quantile lattice Q and its prior", choices=LATTICES)
    assignment: str = option("exact", "assignment solver: exact (Hungarian/LAPJV) or greedy (Alg. 3)", choices=ASSIGNMENTS)
    assign_every: int = option(3, "K: solve the assignment every K epochs (paper: 2, 3 or 5); validation runs on the same "
                                  "epochs. With --assign-batch, K spaces only validation unless --no-assign-every-batch",
                               within="[1, inf)")
    momentum: float = option(0.7, "ρ in (0, 1]: weight of the new lattice point in the code update", within="(0, 1]",
                             hint="ρ = 1 is plain assignment, ρ = 0 would never move a code")
    init: str = option("pca", "initial assignment π₀: PCA scores matched to the lattice, or random", choices=INITS)
    cost: str = option("", "assignment cost; empty = the same as --loss (the L2 ablation uses l2)", choices=("", *LOSSES))
    assign_batch: int | None = option(None, "m for Algorithm 2 (mini-batch assignment, m×m costs); 0 = full batch "
                                            f"(Alg. 1); auto (None): Alg. 1 up to {N_AUTO} images, else m = {M_AUTO}",
                                      type=int, within="[0, inf)", auto_word=True,
                                      hint="give 0 (Algorithm 1), m >= 2 (Algorithm 2) or auto")
    lattice_subset: str = option("held", "Alg. 2 lattice subset K of batch B: 'held' = the points π(B) its images hold "
                                          "(codes settle); 'random' = a part of a fresh random partition of the lattice "
                                          "(codes keep moving and shrink towards 0)", choices=SUBSETS)
    sampler: str = option("codes", "where sample() draws z: 'codes' = a Gaussian kernel density on the training "
                                   "codes, where G is trained (bandwidth: the median distance between nearest "
                                   "codes, widened up to √2×, or the prior, when its draws copy training "
                                   "images); 'prior' = the lattice's prior (the paper)",
                          choices=SAMPLERS)
    colour_warmup: float | None = option(None, "fraction of the updates that regress G with L1 alone before --loss "
                                               "takes over, so colour is learned before SSIM's structural gradient "
                                               f"drowns it; None = auto: {RGB_COLOUR_WARMUP} for RGB images, 0 for "
                                               "others", type=float, within="[0, 1]")
    code_noise: float | None = option(None, "f: generator steps decode Ẑ + f·h/√d·ε, ε ~ N(0, I), h the median "
                                            "distance between nearest codes, so G is fitted between the codes too, "
                                            "where samples are drawn; 0 = off (the paper); None = auto: "
                                            f"{VOLUME_CODE_NOISE} for volumes, 0 for images (on 3-D phantom heads it "
                                            "raised the samples with anatomy from 2 in 3 to over 4 in 5; on 2-D sets "
                                            "it lost recall; README)",
                                      type=float, within="[0, inf)")
    redraw_lattice: float = option(0.0, "fraction of the epochs (the first ones) whose assignment draws a fresh "
                                        "lattice Q of the same prior first, so G is fitted at ever new prior "
                                        "points rather than at n fixed ones, and prior draws land where it was "
                                        "trained; the rest of the epochs keep the last Q, so codes settle and "
                                        "reconstructions sharpen; 0 = off (the paper)",
                                   type=float, within="[0, 1]")
    assign_every_batch: bool = option(True, "Alg. 2: assign in every batch, as the paper; --no-assign-every-batch "
                                            "assigns only in the batches of every K-th epoch")

    def validate(self) -> None:
        super().validate()
        if self.assign_batch == 1:
            raise NeuroSQLError("assign-batch must be 0 (full batch), >= 2 or auto, got 1: one image has nothing to swap with")

    @property
    def cost_name(self) -> str:
        return self.cost or self.loss

    @property
    def validate_every(self) -> int:
        """Validation runs on the assignment epochs, whose round has decoded G(Q) already."""
        return self.assign_every

    @property
    def fixed_batch(self) -> int | None:
        """Alg. 2 steps with m images (App. F)."""
        return self.assign_batch or None


def check_schedule(cfg: NeuroSQLConfig, epochs: int, n: int, shard) -> None:
    """Warn when the budget leaves no assignment round; refuse an Alg. 2 batch m larger than the
    n training images (per process under torchrun)."""
    if not (cfg.assign_batch and cfg.assign_every_batch) and epochs <= cfg.assign_every:
        warnings.warn(f"{epochs} epochs with --assign-every {cfg.assign_every}: the codes are never "
                      "reassigned (assignment runs every K epochs before the last), only the generator trains; "
                      f"give more than {cfg.assign_every} epochs or a lower --assign-every", stacklevel=5)
    share = n // shard.world  # the fewest images a process holds
    if cfg.assign_batch > share:
        held = " per process" if shard.active else ""
        raise NeuroSQLError(f"assign-batch {cfg.assign_batch} is larger than the {share} training images{held}; "
                            f"pass at most {share}, or 0 for the full batch (Algorithm 1)")


class NeuroSQL(LatentGenerator):
    """Deep generative model trained by quantile assignment, with no encoder or discriminator.

    >>> model = NeuroSQL(latent_dim=16).fit(X)   # X: (n, C, H, W) in [0, 1]
    >>> images = model.sample(64, seed=0)

    Held-out images get codes without an encoder (:meth:`encode`): the nearest
    lattice point under the training cost ℓ, optionally refined by gradient
    descent on z with the generator frozen.
    """

    kind = "neurosql"
    keeps_codes = True
    samples_by_label = True
    config_class = NeuroSQLConfig
    builders = {"generator": build_generator}
    deals_bank = property(lambda self: bool(self.config.assign_batch))  # Alg. 2: points travel between processes

    def fit(self, X, X_val=None, checkpoint=None, callback=None, labels=None) -> "NeuroSQL":
        """Algorithm 1, or Algorithm 2 with ``assign_batch`` m (auto: chosen from len(X), the rule in
        ``assign_batch_rule_``), with ``code_noise`` f and ``colour_warmup`` (auto: from the data's kind).
        See :meth:`Method.fit` for the arguments; labels: optional (n,) class of each image, kept with the
        training codes (``labels_``) for ``sample(m, label=c)``."""
        labels = None if labels is None else check_labels(labels, len(X))
        assign_batch, self.assign_batch_rule_ = resolve_assign_batch(self.config.assign_batch, len(X))
        code_noise, colour_warmup = self.config.code_noise, self.config.colour_warmup
        if code_noise is None:  # auto
            code_noise = VOLUME_CODE_NOISE if np.ndim(X) == 5 else 0.0
        if colour_warmup is None:  # auto
            colour_warmup = RGB_COLOUR_WARMUP if np.ndim(X) == 4 and np.shape(X)[1] == 3 else 0.0
        # what ran, as checkpoints record it
        self.config = replace(self.config, assign_batch=assign_batch, code_noise=code_noise,
                              colour_warmup=colour_warmup)
        X = self._as_images(X)
        return start_training(self, X, X_val, checkpoint, callback, labels=labels)

    def _as_images(self, X):
        """Validated images: a tensor, or for Alg. 2 a numpy array (a memory map stays on disk)."""
        if isinstance(X, np.ndarray) and self.config.assign_batch:
            return check_lazy_images(X)
        return check_images(X)

    def _setup(self, X, labels=None) -> None:
        """Lattice Q, generator G, π₀ and the code bank Ẑ = Q_π₀ for this process's images X."""
        cfg = self.config
        check_schedule(cfg, self.budget_.epochs, len(self.train_index_), self._shard)
        self.labels_ = None if labels is None else labels[self.train_index_]  # (n,), aligned with codes_
        lattice = make_lattice(cfg.lattice, len(self.train_index_), cfg.latent_dim, cfg.seed)
        self.networks_["generator"] = self._backbone()
        points = self._shard.lattice_share(lattice.n, cfg.seed)  # this process's share of Q
        Q = lattice.points[points].to(self.device_)  # (n_local, d)
        shard_perm = initial_assignment(X, Q, cfg.init, cfg.seed, self._solve)  # π₀ within this process's shard
        self.bank_ = CodeBank.initial(lattice, self._local, points, shard_perm, cfg.momentum, self.device_)

    lattice_ = property(lambda self: self.bank_.lattice, doc="The quantile lattice Q of the training images.")
    codes_ = property(lambda self: self.bank_.codes, doc="Ẑ (n, d): the code of each training image.")
    perm_ = property(lambda self: self.bank_.perm, doc="π (n,): the lattice point of each training image.")

    def _solve(self, C, method: str | None = None, warm: bool = False) -> np.ndarray:
        """π (rows,) for cost C (rows, cols) with the configured solver (or ``method``); ``warm``
        starts the exact solver from the last warm round's prices (consecutive Alg. 1 costs are alike)."""
        method = method or self.config.assignment
        if method == "exact" and warm:
            self._solution = exact_solution(C, warm_start=getattr(self, "_solution", None))
            return self._solution.perm
        return assign(C, method)

    def _cost(self, x, images) -> torch.Tensor:
        """The assignment cost matrix (|x|, |images|) under --cost (by default ℓ, the training loss)."""
        return pairwise_cost(x, images, self.config.cost_name, chroma_weight=self.config.chroma_weight)

    def _decode_lattice(self, z) -> torch.Tensor:
        return self.decode(z, to_cpu=False)

    # ------------------------------------------------------------- training
    def _begin_epoch(self, epoch, parts) -> None:
        """The scale of this epoch's code noise (h from the codes as the epoch starts; the processes'
        mean under torchrun, where each holds its shard's codes), and for Alg. 2 whether this epoch
        assigns and the lattice subsets K of its batches (:meth:`CodeBank.subsets`)."""
        cfg = self.config
        f = cfg.code_noise
        self._noise_scale = f and f * self._shard.mean(self._kernel_h()) / cfg.latent_dim ** 0.5
        if not cfg.assign_batch:
            return
        last = epoch == self.budget_.epochs
        self._assigns = cfg.assign_every_batch or (epoch % cfg.assign_every == 0 and not last)
        if self._assigns:
            self._redraw(epoch)
        self._subsets = self.bank_.subsets(parts, cfg.lattice_subset == "held", self._epoch_generator)

    def _train_step(self, x, idx) -> dict[str, float]:
        """Alg. 1 line 4 (one step of the decoder regression), or Alg. 2 lines 6–16."""
        if not self.config.assign_batch:
            return self._generator_step(x, idx)
        K = next(self._subsets) if self._assigns else None
        return algorithm2_step(self.bank_, x, idx, K, self._generator_step, self._decode_lattice, self._cost,
                               self._solve)

    def _generator_step(self, x, idx) -> dict[str, float]:
        """A regression step of x on its codes Ẑ_idx, with the epoch's code noise; it sees the augmented
        x, the cost x itself. DDP all-reduces the gradients."""
        generator = self._train_network("generator").train()  # Alg. 2's costs left it in eval mode
        z = self.codes_[idx]
        if self._noise_scale:
            z = z + self._noise_scale * torch.randn(z.shape, generator=self._epoch_generator).to(z.device)
        loss = loss_per_sample(generator(z), self._augmented(x), self._step_loss(x),
                               self.config.chroma_weight).mean()
        self.training_.optimizations[0].step(loss)
        return {"train_loss": float(loss.detach())}

    def _step_loss(self, x) -> str:
        """ℓ of this generator step: L1 during the colour warm-up, then --loss. With ½(1−SSIM) the
        gradient on a flat generator is 12-19× L1's and 96-98 % of it moves no image's mean colour,
        so under Adam the colour signal is lost; L1 alone fits colour first (README, Colour)."""
        warmup = self.config.colour_warmup  # resolved by fit
        return "l1" if self.training_.optimizations[0].updates < warmup * self.budget_.steps else self.config.loss

    def _end_epoch(self, X, epoch, last) -> dict:
        """Alg. 1 lines 5–7 every K epochs but the last: all images against the whole lattice, one
        global π (rank 0 solves the gathered cost rows under torchrun)."""
        self._round_images = None  # G(Q) of this epoch's round, for its validation
        if self.config.assign_batch or epoch % self.config.assign_every or last:
            return {}
        self._redraw(epoch)
        n, local = self.lattice_.n, self.bank_.local
        solve = lambda C: self._shard.solve_globally(C, n, lambda full: self._solve(full, warm=True))[local]
        row, self._round_images = algorithm1_round(self.bank_, X, self._decode_lattice, self._cost, solve)
        return row

    def _redraw(self, epoch: int) -> None:
        """A fresh lattice before this epoch's assignment while ``epoch`` is within the first
        ``redraw_lattice`` of the epochs; its seed comes from the run's seed and the epoch, so a
        resumed run and every torchrun process draw the same one."""
        if epoch <= self.config.redraw_lattice * self.budget_.epochs:
            self.bank_.redraw(derived_seed(self.config.seed, epoch))

    def _validation_loss(self, X_val) -> float:
        """Each held-out image against its nearest image among G(Q_S), S a fixed seeded subset of at
        most VAL_LATTICE lattice points, G(Q_S) taken from this epoch's round when there was one.
        With a weight average, the averaged G decodes each image's nearest point under the round's G
        and that pair counts: decoding all of G_avg(Q_S) cost half a round at 64 px, n = 200
        (benchmarks/cost_matrix.py, training path), and G_avg stays close to G. Its two nearest
        points took 0.21 of a round, the nearest 0.16 (target 0.2)."""
        n = self.lattice_.n
        S = torch.arange(n)
        if n > VAL_LATTICE:
            S = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed))[:VAL_LATTICE]
        points, cfg = self.lattice_.points[S], self.config
        cost = partial(pairwise_cost, loss=cfg.loss, chroma_weight=cfg.chroma_weight)
        images = self.__dict__.pop("_round_images", None)  # released either way
        if images is None:  # no round this epoch: decode with the weights in use
            return float(cost(X_val, self.decode(points, to_cpu=False)).min(dim=1).values.mean())
        costs = cost(X_val, images[S.to(images.device)])  # (m, |S|)
        if not self.training_.averages:
            return float(costs.min(dim=1).values.mean())
        nearest = costs.argmin(dim=1).cpu()  # (m,)
        with torch.no_grad():  # each image against its own point only: m pairs, not an m × m matrix
            pairs = loss_per_sample(X_val, self.decode(points[nearest], to_cpu=False), cfg.loss,
                                    chroma_weight=cfg.chroma_weight)
        return float(pairs.mean())

    bandwidth_, copy_ratio_ = 1.0, None  # where sample() draws, and its copy ratio, until _after_fit sets them

    def _after_fit(self, X) -> None:
        """Where sample() draws (``bandwidth_``): near the codes with h widened, or from the prior
        (None), so that samples are not copies of training images (:func:`copy_guard`). Left at h for
        the prior sampler and under torchrun, where each process holds only its shard's codes."""
        cfg = self.config
        if cfg.sampler != "codes" or self._shard.active or len(self.codes_) < 3:
            return
        cost = partial(pairwise_cost, loss=cfg.loss, chroma_weight=cfg.chroma_weight)
        with torch.no_grad():
            self.bandwidth_, self.copy_ratio_ = copy_guard(self.codes_, X, partial(self.decode, to_cpu=False), cost,
                                                           self._prior_sample, cfg.seed, self._kernel_h())
        if self.copy_ratio_ < COPY_RATIO:
            warnings.warn(f"samples may copy training images: their distance to the nearest training image is "
                          f"{self.copy_ratio_:.2f} of the training images' to each other near the codes and from the "
                          "prior; the memorisation check (metrics.json) tells how many; fewer epochs or more images "
                          "help", stacklevel=4)

    # ------------------------------------------------------------ inference
    prior = property(lambda self: self.lattice_.prior, doc="Name of the latent prior (see ``Lattice.prior``).")

    def _prior_sample(self, m, generator) -> torch.Tensor:
        return self.lattice_.sample_prior(m, generator)

    def sample_latent(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m codes z (m, d) from the configured sampler (``sampler``), on the CPU; a seed makes them
        reproducible. 'codes': a kernel density on the training codes (:func:`kernel_draws`) at the
        bandwidth the copy guard chose after training, or the prior where it found those draws to be
        copies of training images; 'prior': the lattice's prior, as the paper samples."""
        if self.config.sampler == "prior" or self.bandwidth_ is None:  # None: the copy guard chose the prior
            return super().sample_latent(m, seed)
        self._check_fitted()
        check_count(m)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return kernel_draws(self.codes_, generator, self._kernel_h())(m, self.bandwidth_)

    def _kernel_h(self) -> float:
        """h of the kernel (:func:`kernel_bandwidth`), computed once per state of the code bank: the
        codes change in place during training (sample grids are drawn between epochs), so the key is
        the tensor and its version counter."""
        codes = self.codes_
        key = (codes.data_ptr(), codes._version, codes.shape)
        if getattr(self, "_h_cache", (None,))[0] != key:
            self._h_cache = (key, kernel_bandwidth(codes))
        return self._h_cache[1]

    def sample(self, m: int, seed: int | None = None, label=None) -> torch.Tensor:
        """m new images G(z), z from :meth:`sample_latent`; a seed makes them reproducible.

        With ``label``, z are drawn between training codes of that class and kept when their
        5 nearest training codes vote for it (see :mod:`neurosql.methods.code_sampling`); needs a
        model fitted with labels.
        """
        if label is None:
            return super().sample(m, seed)
        check_count(m)
        label = resolve_label(label, self.classes_)  # classes_ checks that the model is fitted
        return self.decode(class_codes(self.codes_, self.labels_, label, m, seed))

    @property
    def classes_(self) -> list | None:
        """The distinct training labels, sorted; None when fitted without labels."""
        self._check_fitted()
        return None if self.labels_ is None else np.unique(self.labels_).tolist()

    def encode(self, X, refine_steps: int = 0, lr: float = 0.05) -> torch.Tensor:
        """Codes for images without an encoder: the lattice point whose image is
        nearest under ℓ, then optionally ``refine_steps`` Adam steps on z minimising ℓ."""
        self._check_fitted()
        check_refinement(refine_steps, lr)
        X = check_images(X).to(self.device_)
        Q = self.lattice_.points.to(self.device_)
        cfg = self.config
        cost = pairwise_cost(X, self.decode(Q, to_cpu=False), cfg.loss, chroma_weight=cfg.chroma_weight)  # (m, n)
        z = Q[cost.argmin(dim=1)].clone()
        if refine_steps > 0:
            z = optimise_latents(self.generator_, X, z, refine_steps, lr, cfg.loss, chroma_weight=cfg.chroma_weight)
        return z.cpu()

    # ---------------------------------------------------------- persistence
    @classmethod
    def _from_state(cls, state: dict, device: str):
        """Checkpoints from before ``sampler`` existed drew from the prior, and keep doing so; those from
        before ``code_noise`` or ``redraw_lattice`` trained without them."""
        defaults = {"sampler": "prior", "code_noise": 0.0, "redraw_lattice": 0.0}
        return super()._from_state({**state, "config": {**defaults, **state["config"]}}, device)

    def _extra_state(self) -> dict:
        return {**self.bank_.state_dict(self._shard), "labels": None if self.labels_ is None else self.labels_.tolist(),
                "assign_batch_rule": self.assign_batch_rule_, "bandwidth": self.bandwidth_,
                "copy_ratio": self.copy_ratio_}

    def _load_extra(self, extra: dict) -> None:
        self.bank_ = CodeBank.from_state(extra, self.config.momentum, self.device_)
        self.labels_ = None if extra.get("labels") is None else np.asarray(extra["labels"])
        self.assign_batch_rule_ = extra.get("assign_batch_rule")  # None in checkpoints from before the rule
        self.bandwidth_ = extra.get("bandwidth", 1.0)  # checkpoints from before the copy guard sample at h
        self.copy_ratio_ = extra.get("copy_ratio")
