"""What every trained image model shares: the validation split, the epoch loop
with early stopping, inference in batches, and persistence of its networks.

A method supplies its networks and one training step; :class:`Estimator` does
the rest with the pieces of :mod:`neurosql.engine.training`, so every method spends the
same budget (epochs × batches of ``batch_size``) under the same optimiser,
schedule, clipping and stopping rule (paper §3.1, App. D "Budget parity").
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data import check_images, take
from ..errors import NeuroSQLError
from ..core.generators import GENERATORS, build_generator
from ..core.losses import LOSSES, loss_per_sample
from ..persistence import load_checkpoint, restoring, save_checkpoint
from ..engine.training import (
    Budget,
    EarlyStopping,
    EpochLog,
    Optimization,
    TrainConfig,
    WeightAverage,
    averaged,
    batches,
    option,
    progress_bar,
    show_losses,
    resolve_device,
    seed_everything,
)


@dataclass
class BackboneConfig(TrainConfig):
    """The generator backbone a method trains (or, for the DDPM, is matched to)."""

    latent_dim: int = option(16, "latent dimension d")
    generator: str = option("convnet", "generator backbone", choices=GENERATORS)
    width: int = option(0, "generator base width; 0 = the backbone's default")

    def validate(self) -> None:
        super().validate()
        if self.latent_dim < 1:
            raise NeuroSQLError(f"latent-dim must be >= 1, got {self.latent_dim}")
        if self.width < 0:
            raise NeuroSQLError(f"width must be >= 0 (0 = default), got {self.width}")
        if self.generator not in GENERATORS:
            raise NeuroSQLError(f"unknown generator '{self.generator}'; choose one of {', '.join(GENERATORS)}")


@dataclass
class LatentGeneratorConfig(BackboneConfig):
    """A backbone trained as G(z), z ~ N(0, I), with an image loss ℓ."""

    loss: str = option("ssim_l1", "image loss ℓ (paper: ½(1−SSIM) + ½·L1)", choices=LOSSES)

    def validate(self) -> None:
        super().validate()
        if self.loss not in LOSSES:
            raise NeuroSQLError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")


def split_validation(X: torch.Tensor, X_val, val_fraction: float, shuffle: torch.Generator):
    """Hold out a seeded ``val_fraction`` of X for early stopping, unless X_val is given.

    Returns (X_train, X_val or None, train_index) with ``train_index`` the sorted
    rows of X kept for training. Nothing is held out when the fraction rounds
    to zero images or would leave fewer than two for training.
    Shapes: X (n, C, H, W) → (n - n_val, C, H, W), (n_val, C, H, W), (n - n_val,).
    """
    if X_val is not None:
        X_val = check_images(X_val)
        if X_val.shape[1:] != X.shape[1:]:
            raise NeuroSQLError(f"validation images {tuple(X_val.shape[1:])} differ from training {tuple(X.shape[1:])}")
        return X, X_val, np.arange(len(X))
    n_val = int(round(val_fraction * len(X)))
    if n_val == 0 or len(X) - n_val < 2:
        return X, None, np.arange(len(X))
    order = torch.randperm(len(X), generator=shuffle)
    train_index = np.sort(order[n_val:].numpy())
    return take(X, train_index), X[np.sort(order[:n_val].numpy())], train_index


def check_count(m) -> None:
    """A number of images to draw must be an integer >= 1."""
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1:
        raise NeuroSQLError(f"number of samples must be an integer >= 1, got {m!r}")


@torch.no_grad()
def decode_in_batches(generator: nn.Module, z, device, batch_size: int = 512, to_cpu: bool = True) -> torch.Tensor:
    """G(z) in evaluation mode, ``batch_size`` codes at a time: (m, d) → (m, C, H, W)."""
    try:
        z = torch.as_tensor(z, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise NeuroSQLError(f"codes must be a numeric (m, {generator.latent_dim}) array or tensor, got {type(z).__name__}") from None
    if z.ndim != 2 or z.shape[1] != generator.latent_dim:
        raise NeuroSQLError(f"codes must have shape (m, {generator.latent_dim}), got {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise NeuroSQLError("codes contain NaN or Inf; pass finite codes")
    generator.eval()
    out = torch.cat([generator(chunk.to(device)) for chunk in z.split(batch_size)])
    return out.cpu() if to_cpu else out


def optimise_latents(
    generator: nn.Module, X: torch.Tensor, z: torch.Tensor, steps: int, lr: float, loss: str, batch_size: int = 256
) -> torch.Tensor:
    """Codes for images by gradient descent on z with the generator frozen.

    Problem: min_z Σ_i ℓ(G(z_i), x_i), solved approximately by ``steps`` Adam
    steps from ``z``. Each image's problem is independent, so images are done
    in chunks of ``batch_size`` (bounded memory), each chunk with one summed loss.
    Shapes: X (m, C, H, W), z (m, d) → (m, d). Complexity: ``steps`` forward and
    backward passes of G over m images.
    """
    generator.eval()
    frozen = [p for p in generator.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    out = []
    try:
        for x, z0 in zip(X.split(batch_size), z.split(batch_size)):
            zc = z0.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([zc], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                loss_per_sample(generator(zc), x, loss).sum().backward()
                opt.step()
            out.append(zc.detach())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return torch.cat(out)


class Estimator:
    """Base of the baselines: parameters in ``__init__``, learning in ``fit``.

    A subclass sets ``kind`` and ``config_class``, lists how to rebuild each of
    its networks in ``builders`` (name → callable taking the network's
    ``config`` dict), and implements ``_build`` (create the networks and their
    :class:`Optimization` objects, the generator's first), ``_train_step`` (one
    batch → dict of float losses with ``train_loss``) and ``_validation_loss``.
    """

    kind = ""
    config_class: type[TrainConfig] = TrainConfig
    builders: dict[str, Callable[..., nn.Module]] = {}
    supports_reconstruction = True  # evaluation skips recon_ssim when False

    def __init__(self, config: TrainConfig | None = None, **params):
        if config is not None and params:
            raise NeuroSQLError(f"pass either a {self.config_class.__name__} or keyword parameters, not both")
        self.config = config if config is not None else self.config_class.from_dict(params)

    # ------------------------------------------------------------------ fit
    def fit(self, X, X_val=None):
        """Train on X (n, C, H, W) (or (n, H, W)) in [0, 1]; without ``X_val`` a
        seeded ``val_fraction`` of X is held out for early stopping. Returns self."""
        cfg = self.config
        cfg.validate()
        X = check_images(X)
        if X.shape[-1] != X.shape[-2]:
            raise NeuroSQLError(f"images must be square, got {tuple(X.shape[-2:])}; crop or resize them")
        self.device_ = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self._shuffle = torch.Generator().manual_seed(cfg.seed)
        X, X_val, self.train_index_ = split_validation(X, X_val, cfg.val_fraction, self._shuffle)
        self.image_shape_ = tuple(X.shape[1:])  # (C, H, W)
        self.budget_ = cfg.budget(len(X))
        self.networks_: dict[str, nn.Module] = {}
        self._optimizations: list[Optimization] = []
        self._build(self.budget_)
        X = X.to(self.device_)
        self._train(X, None if X_val is None else X_val.to(self.device_))
        self._after_fit(X)
        return self

    def _train(self, X: torch.Tensor, X_val: torch.Tensor | None) -> None:
        """The epoch loop: train steps on seeded batches, validate, stop early, keep the best
        weights; validation, the best snapshot and the result use the weight averages."""
        cfg, budget = self.config, self.budget_
        stopping, best = EarlyStopping(cfg.patience, min_epoch=budget.epochs // 2), None
        averages = [WeightAverage(net, cfg.ema) for net in self.networks_.values()] if cfg.ema else []
        self.log_ = EpochLog()
        self.epochs_run_ = 0
        bar = progress_bar(budget.steps, self.kind.upper(), cfg.progress)
        for epoch in range(1, budget.epochs + 1):
            start = time.perf_counter()
            for net in self.networks_.values():
                net.train()
            totals: dict[str, float] = {}
            for idx in batches(len(X), budget.batch_size, self._shuffle):
                x = X[idx.to(X.device)]  # (b, C, H, W)
                for key, value in self._train_step(x).items():
                    totals[key] = totals.get(key, 0.0) + value * len(idx)
                for average in averages:
                    average.update()
                bar.update(1)
            row = {"epoch": epoch, **{k: v / len(X) for k, v in totals.items()}}
            row.update(lr=self._optimizations[0].lr, time_generator=time.perf_counter() - start)
            if not math.isfinite(row["train_loss"]):
                bar.close()
                raise NeuroSQLError(f"{self.kind} training diverged at epoch {epoch} (loss {row['train_loss']}); lower --lr")
            with averaged(averages):
                if X_val is not None:
                    start = time.perf_counter()
                    row.update(val_loss=self._validation_loss(X_val), time_val=time.perf_counter() - start)
                if "val_loss" in row and stopping.update(epoch, row["val_loss"]):
                    best = {name: copy.deepcopy(net.state_dict()) for name, net in self.networks_.items()}
            self.log_.append(row)
            self.epochs_run_ = epoch
            show_losses(bar, self.log_.rows)
            if stopping.should_stop(epoch):
                break
        bar.close()
        with averaged(averages):
            final = best or {name: copy.deepcopy(net.state_dict()) for name, net in self.networks_.items()}
        for name, net in self.networks_.items():
            net.load_state_dict(final[name])
        self.updates_ = self._optimizations[0].updates

    def _build(self, budget: Budget) -> None:
        raise NotImplementedError

    def _backbone(self) -> nn.Module:
        """The configured generator for this data, on the model's device."""
        cfg, (C, R, _) = self.config, self.image_shape_
        return build_generator(cfg.generator, cfg.latent_dim, resolution=R, channels=C, width=cfg.width or None).to(self.device_)

    def _train_step(self, x: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def _validation_loss(self, X_val: torch.Tensor) -> float:
        raise NotImplementedError

    def _after_fit(self, X: torch.Tensor) -> None:
        """Learned state computed from the final networks (e.g. the VAE's codes)."""

    # ------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "networks_"):
            name = type(self).__name__
            raise NeuroSQLError(f"this {name} model is not fitted yet; call fit(X) or {name}.load(path)")

    @property
    def n_parameters(self) -> int:
        """Trainable scalars of every network the method trains (generator, encoder, critic, denoiser)."""
        self._check_fitted()
        return sum(p.numel() for net in self.networks_.values() for p in net.parameters() if p.requires_grad)

    # ---------------------------------------------------------- persistence
    def _extra_state(self) -> dict:
        """Method-specific learned state to save besides the networks."""
        return {}

    def _load_extra(self, state: dict) -> None:
        """Restore what :meth:`_extra_state` saved."""

    def save(self, path: str | Path) -> Path:
        """Config, every network (its rebuild config and weights), the epoch log and the learned state."""
        self._check_fitted()
        state = {
            "kind": self.kind,
            "config": self.config.to_dict(),
            "networks": {name: {"config": net.config, "state": net.state_dict()} for name, net in self.networks_.items()},
            "image_shape": list(self.image_shape_),
            "train_index": torch.as_tensor(self.train_index_),
            "log": self.log_.rows,
            "epochs_run": self.epochs_run_,
            "updates": self.updates_,
            **self._extra_state(),
        }
        return save_checkpoint(state, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """Rebuild a saved model for inference; ``device`` overrides where it runs."""
        state = load_checkpoint(path, cls.kind)
        with restoring(path):
            return cls._restore(state, device)

    @classmethod
    def _restore(cls, state: dict, device: str):
        model = cls(cls.config_class.from_dict({**state["config"], "device": device}))
        model.device_ = resolve_device(device)
        model.networks_ = {}
        for name, saved in state["networks"].items():
            net = cls.builders[name](**saved["config"]).to(model.device_)
            net.load_state_dict(saved["state"])
            model.networks_[name] = net.eval()
        model.image_shape_ = tuple(state["image_shape"])
        model.train_index_ = state["train_index"].numpy()
        model.log_ = EpochLog(state["log"])
        model.epochs_run_ = state["epochs_run"]
        model.updates_ = state["updates"]
        model._load_extra(state)
        return model


class LatentGenerator(Estimator):
    """An estimator whose images are G(z), z ~ N(0, I): the VAE and the GAN.

    ``networks_["generator"]`` is a backbone from :func:`neurosql.core.generators.build_generator`.
    """

    prior = "normal"  # the latent prior's name, as in ``Lattice.prior``

    @property
    def generator_(self) -> nn.Module:
        self._check_fitted()
        return self.networks_["generator"]

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def decode(self, z, batch_size: int = 512, to_cpu: bool = True) -> torch.Tensor:
        """G(z) in evaluation mode, in batches: (m, d) codes → (m, C, H, W) images."""
        self._check_fitted()
        return decode_in_batches(self.generator_, z, self.device_, batch_size, to_cpu)

    def sample_latent(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m codes z ~ N(0, I), (m, d) on the CPU; a seed makes them reproducible."""
        self._check_fitted()
        check_count(m)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(m, self.latent_dim, generator=generator)

    def sample(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m new images G(z), z ~ N(0, I): (m, C, H, W) in [0, 1] on the CPU."""
        return self.decode(self.sample_latent(m, seed))

    def reconstruct(self, X, refine_steps: int = 0) -> torch.Tensor:
        """G(encode(X)) for images X (m, C, H, W)."""
        return self.decode(self.encode(X, refine_steps))

    def encode(self, X, refine_steps: int = 0) -> torch.Tensor:
        raise NotImplementedError
