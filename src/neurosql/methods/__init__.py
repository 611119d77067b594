"""The training methods — NeuroSQL and the baselines trained under the same budget as it (paper §3.1,
App. D, I): a VAE and a GAN on the same generator backbones, a DDPM whose U-Net is scaled to the
compared generator's parameter count — by name, and loading any saved model by the kind in its checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..errors import NeuroSQLError
from .checkpoints import read_model
from .ddpm import DDPM, DDPMConfig
from .gan import GAN, GANConfig
from .neurosql import NeuroSQL, NeuroSQLConfig
from .vae import VAE, VAEConfig

METHODS = {"neurosql": NeuroSQL, "vae": VAE, "gan": GAN, "ddpm": DDPM}
CONFIGS = {"neurosql": NeuroSQLConfig, "vae": VAEConfig, "gan": GANConfig, "ddpm": DDPMConfig}


def method_class(name: str):
    """The estimator class registered as ``name``."""
    if name not in METHODS:
        raise NeuroSQLError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def build_method(name: str, **params):
    """An unfitted estimator ``name`` with config fields ``params`` (the rest at their defaults)."""
    cls = method_class(name)
    unknown = sorted(set(params) - set(CONFIGS[name].__dataclass_fields__))
    if unknown:
        raise NeuroSQLError(f"unknown parameter(s) {', '.join(unknown)} for method '{name}'")
    return cls(CONFIGS[name](**params))


def load_model(path: str | Path, device: str = "auto"):
    """Load a saved model of any method, chosen by the checkpoint's ``kind`` (the file is read once)."""
    return read_model(path, METHODS, device)
