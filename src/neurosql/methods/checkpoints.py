"""One checkpoint schema for every method, ``{kind, format, config, networks, extra, training}``,
and the one way back from a file to a model: read and checked once (:func:`read_model`), then
rebuilt by the method's class. Formats before 3 are refused (:mod:`neurosql.persistence`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..engine.config import Budget, resolve_device
from ..engine.distributed import Shard
from ..engine.training import EpochLog, rng_state
from ..errors import NeuroSQLError
from ..persistence import CHECKPOINT_FORMAT, load_checkpoint, restoring


def checkpoint_state(model) -> dict:
    """What :meth:`Method.save` writes. All processes call it (gathering the learned state
    may need every one); a loaded model keeps the training state it was loaded with, so
    that it stays resumable."""
    extra = model._extra_state()
    training = model.__dict__.get("training_")
    training = model._saved_training if training is None else {**training.state_dict(), "rng": rng_state()}
    return {
        "kind": model.kind,
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "networks": {name: {"config": net.config, "state": net.state_dict()} for name, net in model.networks_.items()},
        "extra": {
            "image_shape": list(model.image_shape_),
            "train_index": torch.as_tensor(model.train_index_),
            "data_digest": model.data_digest_,
            "log": model.log_.rows,
            "epochs_run": model.epochs_run_,
            "budget": vars(model.budget_),
            "updates": model.training_.optimizations[0].updates if "training_" in model.__dict__ else model.updates_,
            **extra,
        },
        "training": training,
    }


def read_model(path: str | Path, classes: dict, device: str = "auto"):
    """The model saved at ``path`` (a file or a run directory), rebuilt by ``classes[kind]``; the
    file is read, checksummed and scanned for NaN once."""
    state = load_checkpoint(path)
    kind = str(state.get("kind"))
    if kind not in classes:
        if len(classes) == 1:
            raise NeuroSQLError(f"{path} holds a '{kind}' model, not '{next(iter(classes))}'; load it with the "
                                "matching class, or with neurosql.methods.load_model")
        raise NeuroSQLError(f"checkpoint {path} holds an unknown model kind '{kind}'; known: {', '.join(classes)}")
    with restoring(path):
        return classes[kind]._from_state(state, device)


def model_from_state(cls, state: dict, device: str):
    """A ``cls`` model from a loaded checkpoint; the training state is kept as saved (for resume)."""
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
    model.data_digest_ = extra["data_digest"]
    model.log_ = EpochLog(extra["log"])
    model.epochs_run_ = extra["epochs_run"]
    model.updates_ = extra["updates"]
    model._load_extra(extra)
    model._local = np.arange(len(model.train_index_))
    model.budget_ = Budget(**extra["budget"])
    model._saved_training = state["training"]
    return model
