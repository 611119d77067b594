"""What every method shares: parameters in the scikit-learn manner, declared capabilities,
training in the one trainer (:mod:`neurosql.engine.trainer`), inference in batches, and one
checkpoint schema (:mod:`neurosql.methods.checkpoints`).

A method supplies its networks and its steps; every method then spends the same
budget (updates of ``batch_size`` images) under the same optimiser, schedule,
clipping, weight average and stopping rule (paper §3.1, App. D "Budget parity").
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..data import check_images
from ..engine.augment import augment, parse_augmentations
from ..engine.config import TrainConfig
from ..engine.trainer import resume_training, start_training
from ..errors import NeuroSQLError
from ..persistence import checkpoint_file, remove_temporaries, save_checkpoint
from .checkpoints import checkpoint_state, model_from_state, read_model


class Method:
    """Base of every method, in the scikit-learn manner: parameters in ``__init__`` (readable as
    attributes, ``get_params`` / ``set_params`` / ``clone``), learning in ``fit``, learned state
    ending in ``_``, and a clear error before fit.

    A subclass sets ``kind``, ``config_class`` and ``builders`` (network name → constructor
    taking the network's ``config`` dict), builds its networks in ``_setup`` and implements
    ``_train_step`` and ``_validation_loss``; ``_begin_epoch``, ``_end_epoch`` and ``_after_fit``
    have defaults that suit a method without state besides its networks.
    """

    kind = ""
    config_class: type[TrainConfig] = TrainConfig
    builders: dict[str, Callable[..., nn.Module]] = {}
    # What a method can do, declared here so that callers ask rather than probe attributes:
    supports_reconstruction = True  # reconstruct(X) (the DDPM has no code to reconstruct from)
    keeps_codes = False  # codes_ (n, d) of the training images once trained (NeuroSQL, the VAE)
    samples_by_label = False  # sample(m, label=c) from a model fitted with labels (NeuroSQL)
    compared_network = "generator"  # the network budget parity matches (the DDPM's is its denoiser)
    bank_ = None  # a CodeBank (NeuroSQL's Ẑ and π): the trainer snapshots, deals and restores it with the networks
    deals_bank = False  # under torchrun the trainer deals the bank's images afresh every epoch (Algorithm 2)
    one_optimiser = False  # one optimiser over every network (one objective), else one each, the first network's first

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

    def __setattr__(self, name: str, value) -> None:
        """Setting a parameter (``model.lr = 1e-3``) changes the config that training reads, as
        :meth:`set_params` does; before, it made an attribute that training never read."""
        config = self.__dict__.get("config")
        if config is not None and name in config.__dataclass_fields__:
            self.set_params(**{name: value})
        else:
            super().__setattr__(name, value)

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
        X = self._as_images(X)
        return start_training(self, X, X_val, checkpoint, callback)

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
        if model._shard.is_main:  # the one process that writes; the others never touch the files
            remove_temporaries(checkpoint.parent, (checkpoint.name,))  # left by a process killed while saving
        return model.continue_training(checkpoint, X, X_val, epochs, steps, progress, callback)

    def continue_training(self, checkpoint: Path, X, X_val=None, epochs: int | None = None, steps: int | None = None,
                          progress: bool | None = None, callback=None) -> "Method":
        """:meth:`resume` for a model already loaded from ``checkpoint`` (the file is read once)."""
        X = self._as_images(X)
        return resume_training(self, checkpoint, X, X_val, epochs, steps, progress, callback)

    # ---------------------------------------------------- the method's part
    def _as_images(self, X):
        """The training images, validated (fit's and resume's first step, before the trainer)."""
        return check_images(X)

    # The trainer's six calls (see neurosql.engine.trainer), the last three optional:
    def _setup(self, X: torch.Tensor) -> None:
        """Build ``networks_`` (and any learned state) for this process's images X."""
        raise NotImplementedError

    def _train_step(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        """One update on the images x = X[idx]; returns numbers for the log row."""
        raise NotImplementedError

    def _validation_loss(self, X_val: torch.Tensor) -> float:
        """The mean loss on held-out images, for early stopping."""
        raise NotImplementedError

    def _begin_epoch(self, epoch: int, parts: list[torch.Tensor]) -> None:
        """Per-epoch set-up before the steps over ``parts`` (the epoch's batches of local indices)."""

    def _end_epoch(self, X: torch.Tensor, epoch: int, last: bool) -> dict:
        """Work after an epoch's updates; returns numbers for the log row."""
        return {}

    def _after_fit(self, X: torch.Tensor) -> None:
        """Learned state computed from the final networks and all training images X (the VAE's codes)."""

    # What training steps share:
    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        """x as the configured augmentations change it (``--augment``), for what the networks learn from."""
        names = parse_augmentations(self.config.augment)
        return augment(x, names, self._epoch_generator) if names else x

    def _train_network(self, name: str) -> nn.Module:
        """The network a training step calls (data-parallel when under torchrun)."""
        return getattr(self, "_train_networks", self.networks_)[name]

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
    def has_codes(self) -> bool:
        """Whether ``codes_`` holds the training images' codes (a VAE's exist once training has ended)."""
        self._check_fitted()
        return self.keeps_codes and self.codes_ is not None

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
        state = checkpoint_state(self)
        return save_checkpoint(state, path) if self._shard.is_main else Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """Rebuild a saved model for inference; ``device`` overrides where it runs."""
        return read_model(path, {cls.kind: cls}, device)

    @classmethod
    def _from_state(cls, state: dict, device: str):
        """A model from a loaded checkpoint (see :func:`neurosql.methods.checkpoints.model_from_state`)."""
        return model_from_state(cls, state, device)
