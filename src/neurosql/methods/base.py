"""What every method shares: parameters in the scikit-learn manner, the fit
preamble (validation split, device, data-parallel shard), training in the one
engine (:mod:`neurosql.engine.loop`), inference in batches, and one checkpoint
schema ``{kind, format, config, networks, extra, training}``.

A method supplies its networks and its steps; every method then spends the same
budget (updates of ``batch_size`` images) under the same optimiser, schedule,
clipping, weight average and stopping rule (paper §3.1, App. D "Budget parity").
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..core.generators import GENERATORS, build_generator
from ..core.losses import CHROMA_WEIGHT, LOSSES, loss_per_sample
from ..data import check_images, take
from ..engine.augment import augment, parse_augmentations
from ..engine.config import check_type, option
from ..engine.distributed import Shard, device_for, init_from_environment
from ..engine.loop import Training, train_epochs
from ..engine.training import (
    Budget,
    EarlyStopping,
    EpochLog,
    Optimization,
    TrainConfig,
    WeightAverage,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from ..errors import NeuroSQLError
from ..persistence import (
    CHECKPOINT_FORMAT,
    checkpoint_file,
    images_digest,
    load_checkpoint,
    remove_temporaries,
    restoring,
    save_checkpoint,
)
from .legacy import upgrade_checkpoint


@dataclass
class BackboneConfig(TrainConfig):
    """The generator backbone a method trains (or, for the DDPM, is matched to)."""

    latent_dim: int = option(16, "latent dimension d", within="[1, inf)")
    generator: str = option("convnet", "generator backbone", choices=GENERATORS)
    width: int = option(0, "generator base width; 0 = the backbone's default", within="[0, 65536]",
                        hint="lower --width")  # wider would overflow even a shapes-only build
    width_schedule: str = option("halving", "ResNet block widths: halving from --width (the paper's 512→256→128→64) or "
                                            "constant (App. D's ResNet at width 512 throughout)", choices=("halving", "constant"))

    def validate(self) -> None:
        super().validate()
        if self.width_schedule != "halving" and self.generator != "resnet":
            raise NeuroSQLError(f"width-schedule {self.width_schedule} applies to --generator resnet only, "
                                f"not {self.generator}; drop it or choose resnet")

    def backbone(self, resolution: int, channels: int, volume: bool = False) -> nn.Module:
        """The configured generator for images (or volumes) of this side and channel count, on the CPU."""
        options = {"width_schedule": self.width_schedule} if self.generator == "resnet" else {}
        return build_generator(self.generator, self.latent_dim, resolution=resolution, channels=channels,
                               width=self.width or None, volume=volume, **options)


@dataclass
class LatentGeneratorConfig(BackboneConfig):
    """A backbone trained as G(z), z ~ N(0, I), with an image loss ℓ."""

    loss: str = option("ssim_l1", "image loss ℓ (paper: ½(1−SSIM) + ½·L1); ssim_l1_yuv (RGB only): SSIM of the luma "
                                  "+ L1 of Y, w·U, w·V, which keeps colour (README, Colour)", choices=LOSSES)
    chroma_weight: float = option(CHROMA_WEIGHT, "w: weight of the chroma U, V against the luma Y in ssim_l1_yuv's L1",
                                  within="[0, inf)")


def split_validation(X: torch.Tensor, X_val, val_fraction: float, shuffle: torch.Generator):
    """Hold out a seeded ``val_fraction`` of X for early stopping, unless X_val is given.

    Returns (X_train, X_val or None, train_index) with ``train_index`` the sorted
    rows of X kept for training. Nothing is held out when the fraction rounds
    to zero images or would leave fewer than two for training.
    Shapes: X (n, C, H, W) → (n - n_val, C, H, W), (n_val, C, H, W), (n - n_val,).
    """
    if X_val is not None:
        X_val = check_images(X_val, min_count=1)  # one held-out image still validates
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


def check_refinement(refine_steps, lr) -> None:
    """What :meth:`LatentGenerator.encode` refines codes with: an integer number of steps >= 0, a rate > 0."""
    check_type("refine_steps", refine_steps, int)
    check_type("lr", lr, float)
    if refine_steps < 0 or lr <= 0:
        raise NeuroSQLError(f"encode needs refine_steps >= 0 and lr > 0, got {refine_steps} and {lr}")


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
    generator: nn.Module, X: torch.Tensor, z: torch.Tensor, steps: int, lr: float, loss: str, batch_size: int = 256,
    chroma_weight: float = CHROMA_WEIGHT,
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
                loss_per_sample(generator(zc), x, loss, chroma_weight).sum().backward()
                opt.step()
            out.append(zc.detach())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return torch.cat(out)


class Method:
    """Base of every method, in the scikit-learn manner: parameters in ``__init__`` (readable as
    attributes, ``get_params`` / ``set_params`` / ``clone``), learning in ``fit``, learned state
    ending in ``_``, and a clear error before fit.

    A subclass sets ``kind``, ``config_class`` and ``builders`` (network name → constructor
    taking the network's ``config`` dict), builds its networks in ``_setup`` and implements
    ``_train_step`` and ``_validation_loss``; the hooks below have defaults that suit a method
    without state besides its networks.
    """

    kind = ""
    config_class: type[TrainConfig] = TrainConfig
    builders: dict[str, Callable[..., nn.Module]] = {}
    supports_reconstruction = True  # evaluation skips recon_ssim when False

    def __init__(self, config: TrainConfig | None = None, **params):
        if config is not None and params:
            raise NeuroSQLError(f"pass either a {self.config_class.__name__} or keyword parameters, not both")
        self.config = config if config is not None else self.config_class.from_dict(params)

    def __getattr__(self, name: str):
        """Parameters read as attributes (``model.lr``), as scikit-learn estimators have them."""
        config = self.__dict__.get("config")
        if config is not None and name in config.__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def get_params(self, deep: bool = True) -> dict:
        """Every parameter by name (``deep`` is accepted for scikit-learn compatibility)."""
        return self.config.to_dict()

    def set_params(self, **params) -> "Method":
        """Change parameters of an unfitted or fitted model (a refit uses them); returns self."""
        unknown = sorted(set(params) - {f.name for f in fields(self.config)})
        if unknown:
            raise NeuroSQLError(f"unknown parameter(s) {', '.join(unknown)} for {type(self).__name__}")
        self.config = replace(self.config, **params)
        return self

    def clone(self) -> "Method":
        """A new unfitted model with the same parameters."""
        return type(self)(replace(self.config))

    # ------------------------------------------------------------------ fit
    def fit(self, X, X_val=None, checkpoint: str | Path | None = None, callback=None) -> "Method":
        """Train on X (n, C, H, W) (or (n, H, W)) in [0, 1]; returns self.

        Without ``X_val`` a seeded ``val_fraction`` of X is held out for early stopping.
        checkpoint: a file rewritten atomically every ``checkpoint_every`` epochs and at the end,
        from which :meth:`resume` continues. callback: called as ``callback(model, row)`` after
        each epoch's log row. Under ``torchrun`` every process calls fit on the same X and trains
        on its shard (see :mod:`neurosql.engine.distributed`).
        """
        return self._fit(X, X_val, checkpoint, callback)

    def _fit(self, X, X_val, checkpoint, callback, **setup) -> "Method":
        cfg = self.config
        cfg.validate()
        X = self._as_images(X)
        if X.shape[-1] != X.shape[-2]:
            raise NeuroSQLError(f"images must be square, got {tuple(X.shape[-2:])}; crop or resize them")
        self._shard = init_from_environment()
        self.device_ = device_for(self._shard, resolve_device(cfg.device))
        self.data_digest_ = images_digest(X)  # resume refuses other data, even of the same shape
        seed_everything(cfg.seed)
        X, X_val, self.train_index_ = split_validation(X, X_val, cfg.val_fraction, torch.Generator().manual_seed(cfg.seed))
        self._shard.check_enough_images(len(X))
        self.image_shape_ = tuple(X.shape[1:])  # (C, H, W) or (C, D, H, W)
        self.budget_ = cfg.budget(len(X), self._batch_size(), self._shard.n_batches)
        self._local = self._shard.indices(len(X))  # this process's images
        X_local = take(X, self._local).to(self.device_)
        self.networks_: dict[str, nn.Module] = {}
        self._setup(X_local, **setup)
        self.training_ = self._new_training()
        self.log_ = EpochLog()
        self.epochs_run_ = 0
        return self._train(X, X_local, X_val, checkpoint, callback)

    @classmethod
    def resume(cls, checkpoint: str | Path, X, X_val=None, device: str = "auto", epochs: int | None = None,
               steps: int | None = None, progress: bool | None = None, callback=None) -> "Method":
        """Continue an interrupted :meth:`fit` from its last checkpoint, on the same data.

        Restored: weights, the method's learned state, optimisers and schedule, weight averages,
        early stopping and the best snapshot, the epoch log and the global RNGs; batches come
        from generators seeded by (seed, rank, epoch), so the next epoch draws what the
        uninterrupted run would have. In deterministic CPU mode the result equals an
        uninterrupted run. ``epochs`` or ``steps`` set a new total budget (same batch size),
        e.g. to train a finished run further; the schedule is then that of the new budget. ``progress``
        shows or hides the progress bar (a display setting: it changes nothing in the run).
        callback: as in :meth:`fit`, for the epochs still to run.
        """
        checkpoint = checkpoint_file(checkpoint)
        model = cls.load(checkpoint, device=device)
        if progress is not None:
            model.config = replace(model.config, progress=progress)
            model.config.validate()
        if model._saved_training is None:
            raise NeuroSQLError(f"{checkpoint} holds no training state (a baseline saved before release 0.3); "
                                "it can sample and be evaluated, but not resumed: start a new run")
        if model._shard.is_main:  # the one process that writes; the others never touch the files
            remove_temporaries(checkpoint.parent, (checkpoint.name,))  # left by a process killed while saving
        X = model._as_images(X)
        if model.data_digest_ is not None and images_digest(X) != model.data_digest_:
            raise NeuroSQLError(
                f"resume needs the same training data, but these images differ from the ones {checkpoint} was trained on; "
                "pass the original data"
            )
        X_train, X_val, _ = split_validation(X, X_val, model.config.val_fraction, torch.Generator().manual_seed(model.config.seed))
        if len(X_train) != len(model.train_index_):
            raise NeuroSQLError(
                f"resume needs the same training data: the checkpoint has {len(model.train_index_)} images, got {len(X_train)}"
            )
        model._shard = init_from_environment()
        model.device_ = device_for(model._shard, model.device_)
        for net in model.networks_.values():
            net.to(model.device_)
        if epochs is not None or steps is not None:
            model.config = replace(model.config, epochs=epochs, steps=steps)
            model.config.validate()
            model.budget_ = model.config.budget(len(X_train), model.budget_.batch_size, model._shard.n_batches)
        with restoring(checkpoint):
            model.training_ = model._new_training()
            model.training_.load_state_dict(model._saved_training)
        model._local = model._shard.indices(len(X_train))
        model._resume_shard()
        set_rng_state(model._saved_training["rng"])
        return model._train(X_train, take(X_train, model._local).to(model.device_), X_val, checkpoint, callback)

    def _train(self, X, X_local, X_val, checkpoint, callback=None) -> "Method":
        train_epochs(self, X, X_local, X_val, checkpoint, callback)
        self.updates_ = self.training_.optimizations[0].updates
        self._after_fit(X)
        if checkpoint is not None:  # the file ends holding the model fit returns
            self.save(checkpoint)
        return self

    def _new_training(self) -> Training:
        """Optimisers (one per parameter group of :meth:`_optimized`), weight averages, early stopping."""
        cfg = self.config
        return Training(
            optimizations=[Optimization(params, cfg, self.budget_) for params in self._optimized()],
            averages=[WeightAverage(net, cfg.ema) for net in self.networks_.values()] if cfg.ema else [],
            stopping=EarlyStopping(cfg.patience, min_epoch=self.budget_.epochs // 2),
        )

    # ---------------------------------------------------- the method's part
    def _as_images(self, X):
        """The training images, validated."""
        return check_images(X)

    def _batch_size(self) -> int | None:
        """A batch size that overrides the configured one (Alg. 2's m), or None."""
        return None

    def _setup(self, X: torch.Tensor) -> None:
        """Build ``networks_`` (and any learned state) for this process's images X."""
        raise NotImplementedError

    def _optimized(self) -> list[list[nn.Parameter]]:
        """Parameter groups with an optimiser each, the generator's (or the denoiser's) first."""
        return [list(net.parameters()) for net in self.networks_.values()]

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        """x as the configured augmentations change it (``--augment``), for what the networks learn from."""
        names = parse_augmentations(self.config.augment)
        return augment(x, names, self._epoch_generator) if names else x

    def _train_network(self, name: str) -> nn.Module:
        """The network a training step calls (data-parallel when under torchrun)."""
        return getattr(self, "_train_networks", self.networks_)[name]

    def _begin_epoch(self, epoch: int, parts: list[torch.Tensor]) -> None:
        """Per-epoch set-up before the steps over ``parts`` (the epoch's batches of local indices)."""

    def _train_step(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def _end_epoch(self, X: torch.Tensor, epoch: int, last: bool) -> dict:
        """Work after an epoch's updates; returns numbers for the log row."""
        return {}

    def _validates(self, epoch: int, last: bool) -> bool:
        return True

    def _validation_loss(self, X_val: torch.Tensor) -> float:
        raise NotImplementedError

    def _learned_tensors(self) -> list[torch.Tensor]:
        """Learned tensors besides the networks' that must stay finite (NeuroSQL's codes)."""
        return []

    def _snapshot(self) -> dict:
        """The learned state kept for the best epoch and restored at the end."""
        return {"networks": {name: copy.deepcopy(net.state_dict()) for name, net in self.networks_.items()}}

    def _restore(self, snapshot: dict) -> None:
        for name, net in self.networks_.items():
            net.load_state_dict(snapshot["networks"][name])

    def _after_fit(self, X: torch.Tensor) -> None:
        """Learned state computed from the final networks and all training images X (the VAE's codes)."""

    def _resume_shard(self) -> None:
        """Keep this process's part of the learned state when a resume starts (``_local`` is set)."""

    def _epoch_shard(self, epoch: int) -> np.ndarray | None:
        """This process's images for ``epoch`` when they change (their indices), else None."""
        return None

    def _extra_state(self) -> dict:
        """Method-specific learned state to save besides the networks (all processes call it)."""
        return {}

    def _load_extra(self, extra: dict) -> None:
        """Restore what :meth:`_extra_state` saved."""

    # ------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if "networks_" not in self.__dict__:
            name = type(self).__name__
            raise NeuroSQLError(f"this {name} model is not fitted yet; call fit(X) or {name}.load(path)")

    @property
    def n_parameters(self) -> int:
        """Trainable scalars of every network the method trains (generator, encoder, critic, denoiser)."""
        self._check_fitted()
        return sum(p.numel() for net in self.networks_.values() for p in net.parameters() if p.requires_grad)

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Config, every network (its rebuild config and weights), the learned state and,
        after training, what a resume needs. Under torchrun every process calls it; the main one writes."""
        self._check_fitted()
        extra = self._extra_state()
        training = self.__dict__.get("training_")
        # a loaded model keeps the training state it was loaded with, so that it stays resumable
        training = self._saved_training if training is None else {**training.state_dict(), "rng": rng_state()}
        if not self._shard.is_main:
            return Path(path)
        state = {
            "kind": self.kind,
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "networks": {name: {"config": net.config, "state": net.state_dict()} for name, net in self.networks_.items()},
            "extra": {
                "image_shape": list(self.image_shape_),
                "train_index": torch.as_tensor(self.train_index_),
                "data_digest": self.data_digest_,
                "log": self.log_.rows,
                "epochs_run": self.epochs_run_,
                "budget": vars(self.budget_),
                "updates": self.training_.optimizations[0].updates if "training_" in self.__dict__ else self.updates_,
                **extra,
            },
            "training": training,
        }
        return save_checkpoint(state, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """Rebuild a saved model for inference; ``device`` overrides where it runs."""
        state = upgrade_checkpoint(load_checkpoint(path, cls.kind))
        with restoring(path):
            return cls._from_state(state, device)

    @classmethod
    def _from_state(cls, state: dict, device: str):
        """A model from an upgraded checkpoint; the training state is kept as saved (for :meth:`resume`)."""
        model = cls(cls.config_class.from_dict({**state["config"], "device": device}))
        model.device_ = resolve_device(device)
        model._shard = Shard()
        model.networks_ = {}
        for name, saved in state["networks"].items():
            net = cls.builders[name](**saved["config"]).to(model.device_)
            net.load_state_dict(saved["state"])
            model.networks_[name] = net.eval()
        extra = state["extra"]
        model.image_shape_ = tuple(extra["image_shape"])
        model.train_index_ = extra["train_index"].numpy()
        model.data_digest_ = extra.get("data_digest")  # None in checkpoints written before it was recorded
        model.log_ = EpochLog(extra["log"])
        model.epochs_run_ = extra["epochs_run"]
        model.updates_ = extra["updates"]
        model._load_extra(extra)
        model._local = np.arange(len(model.train_index_))
        budget = extra.get("budget")  # release-0.1 checkpoints carry none: theirs was the configured one
        model.budget_ = Budget(**budget) if budget else model.config.budget(len(model.train_index_), model._batch_size(), model._shard.n_batches)
        model._saved_training = state.get("training")
        return model


class LatentGenerator(Method):
    """A method whose images are G(z) for codes z from a prior: NeuroSQL, the VAE and the GAN.

    ``networks_["generator"]`` is a backbone from :func:`neurosql.core.generators.build_generator`.
    """

    prior = "normal"  # the latent prior's name, as in ``Lattice.prior``

    @property
    def generator_(self) -> nn.Module:
        self._check_fitted()
        return self.networks_["generator"]

    def _backbone(self) -> nn.Module:
        """The configured generator for this data, on the model's device."""
        shape = self.image_shape_
        return self.config.backbone(shape[-1], shape[0], volume=len(shape) == 4).to(self.device_)

    def _prior_sample(self, m: int, generator: torch.Generator | None) -> torch.Tensor:
        """m codes (m, d) from the prior, on the CPU."""
        return torch.randn(m, self.config.latent_dim, generator=generator)

    @torch.no_grad()
    def decode(self, z, batch_size: int = 512, to_cpu: bool = True) -> torch.Tensor:
        """G(z) in evaluation mode, in batches: (m, d) codes → (m, C, H, W) images."""
        self._check_fitted()
        return decode_in_batches(self.generator_, z, self.device_, batch_size, to_cpu)

    def sample_latent(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m codes z (m, d) drawn from the prior, on the CPU; a seed makes them reproducible."""
        self._check_fitted()
        check_count(m)
        return self._prior_sample(m, torch.Generator().manual_seed(seed) if seed is not None else None)

    def sample(self, m: int, seed: int | None = None) -> torch.Tensor:
        """m new images G(z), z from the prior: (m, C, H, W) in [0, 1] on the CPU."""
        return self.decode(self.sample_latent(m, seed))

    def encode(self, X, refine_steps: int = 0, lr: float = 0.05) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, X=None, refine_steps: int = 0) -> torch.Tensor:
        """G(codes_) for the training images (X=None, in ``train_index_`` order), or G(encode(X))."""
        self._check_fitted()
        if X is None and "codes_" not in self.__dict__:
            raise NeuroSQLError(f"a {self.kind} keeps no training codes; pass the images to reconstruct")
        return self.decode(self.codes_ if X is None else self.encode(X, refine_steps))
