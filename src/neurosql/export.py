"""The generator G of a trained model for other tools (``neurosql export``): codes z (m, d) → images (m, C, H, W).

Formats:

- ``torchscript``: ``torch.jit.load(path)(z)``, no NeuroSQL needed; traced, so the
  network's control flow is that of the example batch (the generators have none that depends on z).
- ``onnx``: the same traced graph for ONNX runtimes, batch size dynamic; needs the ``onnx`` package.
- ``safetensors``: the weights, with the generator's rebuild config in the metadata;
  :func:`load_safetensors` rebuilds it (the file cannot run code).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from .core.generators import build_generator
from .errors import NeuroSQLError
from .persistence import atomic_write

FORMATS = {"torchscript": ".pt", "onnx": ".onnx", "safetensors": ".safetensors"}  # format → file suffix
EXTRAS = {"onnx": "onnx", "safetensors": "safetensors"}  # format → the package it needs


def check_format(name: str) -> None:
    """An export format that exists and whose package is installed."""
    if name not in FORMATS:
        raise NeuroSQLError(f"unknown export format '{name}'; choose one of {', '.join(FORMATS)}")
    package = EXTRAS.get(name)
    if package is not None:
        try:
            __import__(package)
        except ImportError:
            raise NeuroSQLError(f"--format {name} needs the '{package}' package; pip install {package} "
                                "(or pip install 'neurosql[export]')") from None


def exportable_generator(model) -> nn.Module:
    """The model's generator G(z) on the CPU in evaluation mode; a method without one (the DDPM) is refused."""
    generator = model.networks_.get("generator")
    if generator is None:
        raise NeuroSQLError(f"a {model.kind} run has no generator G(z) to export (its sampler is iterative); "
                            "export a neurosql, vae or gan run")
    return generator.to("cpu").eval()


def generator_bytes(generator: nn.Module, name: str) -> bytes:
    """The file of ``generator`` in format ``name`` (see the module docstring)."""
    check_format(name)
    z = torch.zeros(2, generator.latent_dim)  # (2, d): an example batch for tracing
    buffer = io.BytesIO()
    if name == "safetensors":
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in generator.state_dict().items()}
        return save(state, metadata={"neurosql_generator": json.dumps(generator.config)})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input check in forward is constant for a trace
        # torch 2.13 marks TorchScript and the legacy ONNX exporter deprecated; both still work, and the user
        # can do nothing about it here
        warnings.filterwarnings("ignore", message=r".*is deprecated\. Please switch to")
        if name == "torchscript":
            torch.jit.save(torch.jit.trace(generator, z), buffer)
        else:
            torch.onnx.export(generator, (z,), buffer, input_names=["z"], output_names=["images"],
                              dynamic_axes={"z": {0: "batch"}, "images": {0: "batch"}}, dynamo=False)
    return buffer.getvalue()


def export_generator(model, name: str, path: str | Path) -> Path:
    """Write the generator of fitted ``model`` to ``path`` in format ``name``, atomically."""
    data = generator_bytes(exportable_generator(model), name)
    return atomic_write(path, lambda f: f.write(data))


def load_safetensors(path: str | Path) -> nn.Module:
    """A generator rebuilt from a ``safetensors`` export, in evaluation mode on the CPU."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["neurosql_generator"])
        state = {key: f.get_tensor(key) for key in f.keys()}
    generator = build_generator(**config)
    generator.load_state_dict(state)
    return generator.eval()
