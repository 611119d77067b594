"""NeuroSQL, the paper's method: fit a generator by quantile assignment (§2.4,
Algorithm 1, or Algorithm 2 with mini-batch assignment), then sample, encode and
reconstruct. The epoch loop, optimiser, checkpoints and data-parallel processes
are the engine's (:mod:`neurosql.engine.loop`); this file holds the algorithm.

Symbols: ``Q`` lattice (``lattice_.points``), ``Ẑ`` codes (``codes_``),
``π`` assignment (``perm_``), ``C`` cost, ``ρ`` momentum, ``K`` assign_every.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..class_sampling import check_labels, class_segment_draws, kernel_draws, resolve_label, sample_class_codes
from ..core.assignment import ASSIGNMENTS, assign, exact_solution
from ..core.generators import build_generator
from ..core.lattice import LATTICES, Lattice, make_lattice
from ..core.losses import LOSSES, loss_per_sample, pairwise_cost
from ..data import check_images, check_lazy_images
from ..errors import NeuroSQLError
from ..engine.config import option
from .auto_batch import M_AUTO, N_AUTO, resolve_assign_batch
from .base import LatentGenerator, LatentGeneratorConfig, check_count, check_refinement, optimise_latents

INITS = ("pca", "random")
SUBSETS = ("held", "random")  # Alg. 2's lattice subset K of a batch
SAMPLERS = ("codes", "prior")  # where sample() draws z: between training codes, or the paper's prior
PCA_INIT_MAX = 10_000  # largest n for the PCA-sorted π₀ (an n×n assignment)
PCA_EXACT_MAX = 5_000  # above it π₀ is solved greedily (its cost is a proxy, not the training cost)
VAL_LATTICE = 4096  # lattice points behind the validation loss (bounded for large n)
RGB_COLOUR_WARMUP = 0.5  # automatic colour warm-up of RGB images (README, Colour: measured on random-colour shapes)


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
                                   "codes); 'prior' = the lattice's prior (the paper)",
                          choices=SAMPLERS)
    colour_warmup: float | None = option(None, "fraction of the updates that regress G with L1 alone before --loss "
                                               "takes over, so colour is learned before SSIM's structural gradient "
                                               f"drowns it; None = auto: {RGB_COLOUR_WARMUP} for RGB images, 0 for "
                                               "others", type=float, within="[0, 1]")
    assign_every_batch: bool = option(True, "Alg. 2: assign in every batch, as the paper; --no-assign-every-batch "
                                            "assigns only in the batches of every K-th epoch")

    def validate(self) -> None:
        super().validate()
        if self.assign_batch == 1:
            raise NeuroSQLError("assign-batch must be 0 (full batch), >= 2 or auto, got 1: one image has nothing to swap with")

    @property
    def cost_name(self) -> str:
        return self.cost or self.loss


class NeuroSQL(LatentGenerator):
    """Deep generative model trained by quantile assignment, with no encoder or discriminator.

    >>> model = NeuroSQL(latent_dim=16).fit(X)   # X: (n, C, H, W) in [0, 1]
    >>> images = model.sample(64, seed=0)

    Held-out images get codes without an encoder (:meth:`encode`): the nearest
    lattice point under the training cost ℓ, optionally refined by gradient
    descent on z with the generator frozen.
    """

    kind = "neurosql"
    config_class = NeuroSQLConfig
    builders = {"generator": build_generator}

    def fit(self, X, X_val=None, checkpoint=None, callback=None, labels=None) -> "NeuroSQL":
        """Algorithm 1 (or Algorithm 2 with ``assign_batch``): alternate generator
        epochs with assignments every K epochs (Alg. 2: generator steps and
        assignments alternate batch by batch). See :meth:`Method.fit` for the arguments;
        labels: optional (n,) class of each image (ints or names); they stay
        with the training codes (``labels_``) for ``sample(m, label=c)``.
        ``assign_batch`` None (auto) becomes the value chosen for len(X) images
        (:func:`resolve_assign_batch`; the rule in words: ``assign_batch_rule_``).
        """
        labels = None if labels is None else check_labels(labels, len(X))
        assign_batch, self.assign_batch_rule_ = resolve_assign_batch(self.config.assign_batch, len(X))
        self.config = replace(self.config, assign_batch=assign_batch)  # what ran, as checkpoints record it
        return self._fit(X, X_val, checkpoint, callback, labels=labels)

    def _as_images(self, X):
        """Validated images: a tensor, or for Alg. 2 a numpy array (a memory map stays on disk)."""
        if isinstance(X, np.ndarray) and self.config.assign_batch:
            return check_lazy_images(X)
        return check_images(X)

    def _batch_size(self) -> int | None:
        return self.config.assign_batch or None  # Alg. 2 steps with m images (App. F)

    def _setup(self, X, labels=None) -> None:
        """Lattice Q, generator G, π₀ and Ẑ = Q_π₀ for this process's images X."""
        cfg = self.config
        if not (cfg.assign_batch and cfg.assign_every_batch) and self.budget_.epochs <= cfg.assign_every:
            warnings.warn(f"{self.budget_.epochs} epochs with --assign-every {cfg.assign_every}: the codes are never "
                          "reassigned (assignment runs every K epochs before the last), only the generator trains; "
                          f"give more than {cfg.assign_every} epochs or a lower --assign-every", stacklevel=4)
        share = len(self.train_index_) // self._shard.world  # the fewest images a process holds
        if cfg.assign_batch > share:
            held = " per process" if self._shard.active else ""
            raise NeuroSQLError(f"assign-batch {cfg.assign_batch} is larger than the {share} training images{held}; "
                                f"pass at most {share}, or 0 for the full batch (Algorithm 1)")
        self.labels_ = None if labels is None else labels[self.train_index_]  # (n,), aligned with codes_
        self.lattice_ = make_lattice(cfg.lattice, len(self.train_index_), cfg.latent_dim, cfg.seed)
        self.networks_["generator"] = self._backbone()
        Q = self.lattice_.points[self._local].to(self.device_)  # (n_local, d)
        shard_perm = self._initial_assignment(X, Q)  # π₀ within this process's shard
        self.codes_ = Q[torch.as_tensor(shard_perm, device=self.device_)].clone()  # Ẑ: (n_local, d)
        self.perm_ = self._local[shard_perm]  # π: this process's images' lattice points, global indices

    def _initial_assignment(self, X, Q) -> np.ndarray:
        """π₀: random, or the data's PCA scores matched to the lattice (App. K's map on scores)."""
        n = len(X)
        if self.config.init == "pca" and (n > PCA_INIT_MAX or not isinstance(X, torch.Tensor)):
            warnings.warn(f"init='pca' matches all n×n pairs; with n = {n} (> {PCA_INIT_MAX}) or data on disk "
                          "the initial assignment is random, as in Algorithm 2", stacklevel=4)
        elif self.config.init == "pca":
            return self._pca_assignment(X, Q)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed)).numpy()

    def _pca_assignment(self, X, Q) -> np.ndarray:
        """Standardised PCA scores of the images matched to the lattice by squared distance."""
        flat = X.flatten(1).to("cpu" if X.device.type == "mps" else X.device, torch.float64)  # MPS has no float64
        k = min(self.config.latent_dim, len(X) - 1, flat.shape[1])
        _, _, V = torch.pca_lowrank(flat, q=k, center=True, niter=4)
        scores = (flat - flat.mean(0)) @ V[:, :k]  # (n, k)
        standardise = lambda A: (A - A.mean(0)) / A.std(0).clamp_min(1e-12)
        cost = torch.cdist(standardise(scores), standardise(Q.to(flat.device, torch.float64)[:, :k])) ** 2  # (n, n)
        return self._solve(cost, "greedy" if len(X) > PCA_EXACT_MAX else None)

    def _solve(self, C, method: str | None = None, warm: bool = False) -> np.ndarray:
        """π (rows,) for cost C (rows, cols) with the configured solver (or ``method``); ``warm``
        starts the exact solver from the last warm round's prices (consecutive Alg. 1 costs are alike)."""
        method = method or self.config.assignment
        if method == "exact" and warm:
            self._solution = exact_solution(C, warm_start=getattr(self, "_solution", None))
            return self._solution.perm
        return assign(C, method)

    # ------------------------------------------------------------- training
    def _begin_epoch(self, epoch, parts) -> None:
        """Q on the device; for Alg. 2 whether this epoch assigns and the lattice subsets K of its batches.

        K ("held", the default): π(B), the points B's images hold. B is a uniform
        random m-subset and π a bijection, so K is one too, as line 9 asks; but an
        image keeps its point unless a batch-mate's fits it better, so codes settle
        on lattice points as in Alg. 1. K ("random"): the parts of a fresh random
        partition of the lattice; an image's own point is then offered with
        probability m/n, codes average ever-new points and shrink (n = 600, m = 64:
        96 % move every epoch, coordinate std 0.80 against the prior's 1), and
        prior samples fall outside what G was trained on. Either way each lattice
        point is offered once per epoch, π stays a permutation, costs are m×m.
        """
        cfg = self.config
        self._Q = self.lattice_.points.to(self.device_)  # (n, d)
        self._round_images = None  # G(Q) of this epoch's Alg. 1 round, for its validation
        if not cfg.assign_batch:
            return
        last = epoch == self.budget_.epochs
        self._assign_now = cfg.assign_every_batch or (epoch % cfg.assign_every == 0 and not last)
        if cfg.lattice_subset == "held":  # batches are disjoint: π(B) is still current when B comes
            order = torch.as_tensor(self.perm_)[torch.cat(parts)]  # (n_local,)
        else:  # the points this process's images hold, in a fresh random order
            order = torch.as_tensor(self.perm_)[torch.randperm(len(self._local), generator=self._epoch_generator)]
        self._subsets = iter(order.to(self.device_).split([len(B) for B in parts]))

    def _train_step(self, x, idx) -> dict[str, float]:
        """A regression step of x on its codes (Alg. 1 step 4, Alg. 2 line 7); in Alg. 2's
        assignment epochs followed by the batch's m×m assignment (lines 8–10)."""
        generator = self._train_network("generator").train()  # Alg. 2's costs left it in eval mode
        # the regression sees the augmented x, the cost below x itself; DDP all-reduces the gradients
        loss = loss_per_sample(generator(self.codes_[idx]), self._augmented(x), self._step_loss(x),
                               self.config.chroma_weight).mean()
        self.training_.optimizations[0].step(loss)
        row = {"train_loss": float(loss.detach())}
        if self.config.assign_batch and self._assign_now:
            row.update(self._assign(x, idx, next(self._subsets), lambda C: self._solve(C)))
        return row

    def _step_loss(self, x) -> str:
        """ℓ of this generator step: L1 during the colour warm-up, then --loss. With ½(1−SSIM) the
        gradient on a flat generator is 12-19× L1's and 96-98 % of it moves no image's mean colour,
        so under Adam the colour signal is lost; L1 alone fits colour first (README, Colour)."""
        warmup = self.config.colour_warmup
        if warmup is None:
            warmup = RGB_COLOUR_WARMUP if x.dim() == 4 and x.shape[1] == 3 else 0.0
        return "l1" if self.training_.optimizations[0].updates < warmup * self.budget_.steps else self.config.loss

    def _end_epoch(self, X, epoch, last) -> dict:
        """Steps 5–7 of Alg. 1 every K epochs: all images against the whole lattice, one global π."""
        if self.config.assign_batch or epoch % self.config.assign_every or last:
            return {}
        n = self.lattice_.n
        solve = lambda C: self._shard.solve_globally(C, n, lambda full: self._solve(full, warm=True))[self._local]
        rows, points = torch.arange(len(X), device=self.device_), torch.arange(n, device=self.device_)
        return self._assign(X, rows, points, solve)

    def _assign(self, x, rows, points, solve) -> dict[str, float]:
        """One assignment round: cost C = ℓ(x, G(Q_points)) (rows, points), π = solve(C), then the
        momentum update Ẑ_rows ← ρ Q_π + (1 − ρ) Ẑ_rows. Alg. 1: rows are all images, points the
        whole lattice; Alg. 2: rows a batch B, points its subset K."""
        cfg = self.config
        start = time.perf_counter()
        images = self.decode(self._Q[points], to_cpu=False)  # G(Q_points): (|points|, C, H, W)
        C = pairwise_cost(x, images, cfg.cost_name, chroma_weight=cfg.chroma_weight)  # (|rows|, |points|)
        middle = time.perf_counter()
        choice = torch.as_tensor(solve(C), device=C.device)  # (|rows|,) a column of C per row
        end = time.perf_counter()
        new = points[choice]
        rows_np, new_np = rows.cpu().numpy(), new.cpu().numpy()  # one device-to-host copy each
        row = {"assign_cost": float(C[torch.arange(len(choice), device=C.device), choice].mean()),
               "changed": float(np.mean(new_np != self.perm_[rows_np])), "time_cost": middle - start,
               "time_assign": end - middle}
        self.perm_[rows_np] = new_np
        if not cfg.assign_batch:  # Alg. 1: all of G(Q), point k in row k, for this epoch's validation
            self._round_images = images
        self.codes_[rows] = cfg.momentum * self._Q[new] + (1 - cfg.momentum) * self.codes_[rows]
        return row

    def _validates(self, epoch, last) -> bool:
        return epoch % self.config.assign_every == 0 or last

    def _validation_loss(self, X_val) -> float:
        """Each held-out image against its nearest image among G(Q_S), S a fixed seeded subset
        of at most VAL_LATTICE lattice points (all when n is smaller).

        Without a weight average, validation sees the weights of this epoch's round and takes
        G(Q_S) from it: decoding G(Q) again cost ~6x the 20 x n costs (64 px, n = 159). With an
        average, G is the average and G(Q_S) is decoded."""
        n = self.lattice_.n
        S = torch.arange(n)
        if n > VAL_LATTICE:
            S = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed))[:VAL_LATTICE]
        images = self.__dict__.pop("_round_images", None)  # released either way
        if images is not None and not self.training_.averages:
            images = images[S.to(images.device)]
        else:
            images = self.decode(self.lattice_.points[S], to_cpu=False)
        cost = pairwise_cost(X_val, images, self.config.loss, chroma_weight=self.config.chroma_weight)
        return float(cost.min(dim=1).values.mean())

    def _learned_tensors(self) -> list[torch.Tensor]:
        return [self.codes_]

    def _snapshot(self) -> dict:
        codes, perm = self._gather_bank()
        return {**super()._snapshot(), "codes": codes, "perm": perm}

    def _restore(self, snapshot: dict) -> None:
        """The snapshot's weights and whole bank (Ẑ, global π); the whole bank is here from now on."""
        super()._restore(snapshot)
        self.codes_, self.perm_ = snapshot["codes"].to(self.device_), snapshot["perm"].numpy().copy()
        self._local = np.arange(self.lattice_.n)

    def _gather_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes Ẑ (n, d) and global lattice indices π (n,) of all training images, on the CPU."""
        return self._shard.gather_bank(self.codes_, torch.as_tensor(self.perm_), self.lattice_.n)

    def _resume_shard(self) -> None:
        self.codes_, self.perm_ = self.codes_[self._local].to(self.device_), self.perm_[self._local]

    def _epoch_shard(self, epoch: int) -> np.ndarray | None:
        """Alg. 2 under torchrun: the images (with their codes and lattice points) dealt afresh to the
        processes every epoch, so that lattice points travel between processes' m×m problems."""
        if not (self._shard.active and self.config.assign_batch):
            return None
        codes, perm = self._gather_bank()
        self._local = self._shard.deal(self.lattice_.n, self.config.seed, epoch)
        self.codes_, self.perm_ = codes[self._local].to(self.device_), perm[self._local].numpy()
        return self._local

    # ------------------------------------------------------------ inference
    prior = property(lambda self: self.lattice_.prior, doc="Name of the latent prior (see ``Lattice.prior``).")

    def _prior_sample(self, m, generator) -> torch.Tensor:
        return self.lattice_.sample_prior(m, generator)

    def sample_latent(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m codes z (m, d) from the configured sampler (``sampler``), on the CPU; a seed makes them
        reproducible. 'codes': a kernel density on the training codes (:func:`kernel_draws`);
        'prior': the lattice's prior, as the paper samples."""
        if self.config.sampler == "prior":
            return super().sample_latent(m, seed)
        self._check_fitted()
        check_count(m)
        return kernel_draws(self.codes_, torch.Generator().manual_seed(seed) if seed is not None else None)(m)

    def sample(self, m: int, seed: int | None = None, label=None) -> torch.Tensor:
        """m new images G(z), z from :meth:`sample_latent`; a seed makes them reproducible.

        With ``label``, z are drawn between training codes of that class and kept when their
        5 nearest training codes vote for it (see :mod:`neurosql.class_sampling`); needs a
        model fitted with labels.
        """
        if label is None:
            return super().sample(m, seed)
        check_count(m)
        label = resolve_label(label, self.classes_)  # classes_ checks that the model is fitted
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        draw = class_segment_draws(self.codes_, self.labels_, label, generator)
        z = sample_class_codes(draw, self.codes_, self.labels_, label, m)
        return self.decode(z)

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
        """Checkpoints from before ``sampler`` existed drew from the prior, and keep doing so."""
        return super()._from_state({**state, "config": {"sampler": "prior", **state["config"]}}, device)

    def _extra_state(self) -> dict:
        codes, perm = self._gather_bank()
        return {"lattice": self.lattice_.spec(), "codes": codes, "perm": perm,
                "labels": None if self.labels_ is None else self.labels_.tolist(),
                "assign_batch_rule": self.assign_batch_rule_}

    def _load_extra(self, extra: dict) -> None:
        self.lattice_ = Lattice.from_spec(extra["lattice"])
        self.codes_ = extra["codes"].to(self.device_)
        self.perm_ = extra["perm"].numpy()
        self.labels_ = None if extra.get("labels") is None else np.asarray(extra["labels"])
        self.assign_batch_rule_ = extra.get("assign_batch_rule")  # None in checkpoints from before the rule
