"""Configuration, in one place: each field's default, help, choices and bounds sit next to it
(like scikit-learn's ``_parameter_constraints``), one function checks them all
(:func:`check_config`: the type, no NaN or Inf, the choices, the interval); the budget every
method shares (:class:`TrainConfig`, the automatic budget, the paper's preset), the backbone's
fields, the fields as command-line flags, and the merge of a recorded run, a preset and flags.
A method declares its own fields in a subclass next to the method (e.g. ``NeuroSQLConfig``)."""

from __future__ import annotations

import argparse
import math
import numbers
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..core.generators import GENERATORS, build_generator
from ..core.losses import CHROMA_WEIGHT, LOSSES
from ..errors import NeuroSQLError
from .augment import parse_augmentations

MAX_SEED = 2**32 - 1  # every RNG seeded from it (NumPy's legacy one included) takes this range
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
              dict: "an object of named values"}
INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")


class Interval(NamedTuple):
    """Numbers between ``low`` and ``high``, each end included or not (``inf`` for none)."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    @classmethod
    def parse(cls, text: str) -> "Interval":
        """'(0, 1]', '[1, inf)', … as written in mathematics."""
        match = INTERVAL.match(text)
        if not match:
            raise ValueError(f"not an interval: {text!r}")
        left, low, high, right = match.groups()
        return cls(float(low), float(high), left == "[", right == "]")

    def __contains__(self, value) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        number = lambda v: str(int(v)) if float(v).is_integer() else repr(v)
        if math.isinf(self.high):
            return f"{'>=' if self.low_closed else '>'} {number(self.low)}"
        brackets = ("[" if self.low_closed else "(", "]" if self.high_closed else ")")
        return f"in {brackets[0]}{number(self.low)}, {number(self.high)}{brackets[1]}"


def option(default: Any, help: str, *, choices=None, within: str | None = None, hint: str = "", **metadata: Any) -> Any:
    """A config field with its default and a one-line help (the CLI reads both), and the values
    it takes: ``choices``, or an interval ``within`` such as "(0, 1]" or "[1, inf)".
    ``hint`` is added to the error for a value outside it."""
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if within is not None:
        metadata["within"] = Interval.parse(within)
    return field(default=default, metadata={"help": help, "hint": hint, **metadata})


def check_type(name: str, value: Any, kind: type) -> None:
    """Raise NeuroSQLError unless ``value`` suits a field of type ``kind``
    (no bool for a number, no string for anything else, no NaN or Inf)."""
    if kind is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise NeuroSQLError(f"{flag_name(name)} must be {TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")


def check_config(config) -> None:
    """Raise NeuroSQLError for the first field of dataclass ``config`` whose value its declaration
    refuses; a field whose default is None (automatic) may stay None."""
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue
        check_type(f.name, value, f.metadata.get("type", type(f.default)))
        choices, within = f.metadata.get("choices"), f.metadata.get("within")
        if choices is not None and value not in choices:
            shown = ", ".join(repr(c) if c == "" else str(c) for c in choices)
            raise NeuroSQLError(f"unknown {flag_name(f.name)} '{value}'; choose one of {shown}")
        if within is not None and value not in within:
            hint = f.metadata.get("hint")
            raise NeuroSQLError(f"{flag_name(f.name)} must be {within}, got {value}{hint and '; ' + hint}")


def flag_name(name: str) -> str:
    """A field's name as its command-line flag spells it (without the dashes)."""
    return name.replace("_", "-")


def resolve_device(name: str) -> torch.device:
    """The one rule for every command: 'auto' → CUDA when available, else Apple's MPS, else
    CPU; a named device must exist here (CUDA index below the GPU count), else an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps") or (device.type != "cuda" and device.index):
        raise NeuroSQLError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuroSQLError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise NeuroSQLError(f"device '{name}' requested but this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}; pick one of them")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NeuroSQLError(f"device '{name}' requested but MPS (Apple silicon) is not available; use --device cpu")
    return device


# The automatic budget (issue 10; measurements in benchmarks/small_data.md): small data sets need
# far more passes than the paper's epoch counts give them, large ones fewer.
# smallest and largest automatic batch size: at 2,000 updates batch 16 beat 64 on 1,000-3,500 digits
AUTO_BATCH = (8, 16)
AUTO_BATCH_DIVISOR = 16  # automatic batch ≈ n / 16, so an epoch is at least ~16 updates
AUTO_EPOCHS = 30  # automatic budget: this many epochs ...
AUTO_STEPS = (2000, 20000)  # ... but at least / at most this many generator updates
# Volumes need twice the floor: on 180 phantom heads at 32³ (benchmarks/phantoms3d.py), 4,000 updates against
# 2,000 took held-out reconstruction SSIM 0.87 → 0.96 and the samples' 3-D proxy-FID 0.52 → 0.30.
AUTO_MIN_STEPS_VOLUMES = 4000
PRESETS = {
    # App. I: AdamW at 2e-4, batch 64, cosine decay, 120–250 epochs, no warm-up, no weight averaging,
    # early stopping with patience 25–30; samples z from the prior (§2.5); one fixed lattice, no code noise
    # and no colour warm-up. A method applies the fields it has.
    "paper": {"epochs": 120, "batch_size": 64, "lr": 2e-4, "warmup": 0.0, "ema": 0.0, "patience": 25,
              "sampler": "prior", "code_noise": 0.0, "colour_warmup": 0.0,
              "redraw_lattice": 0.0},
}


@dataclass(frozen=True)
class Budget:
    """A run's resolved budget: ``epochs`` passes of ``steps_per_epoch`` updates of ``batch_size`` images."""

    batch_size: int
    steps_per_epoch: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class TrainConfig:
    """The optimisation budget shared by every method (App. I, J)."""

    epochs: int | None = option(None, "training epochs; None = auto, see steps", type=int, within="[1, inf)",
                                hint="or omit it for the automatic budget")
    steps: int | None = option(None, f"budget in generator updates, rounded up to whole epochs; None (with epochs "
                                     f"None) = auto: {AUTO_EPOCHS} epochs, at least {AUTO_STEPS[0]} ("
                                     f"{AUTO_MIN_STEPS_VOLUMES} for volumes) and at most {AUTO_STEPS[1]} updates",
                               type=int, within="[1, inf)",
                               hint="or omit it for the automatic budget")
    batch_size: int | None = option(None, f"images per generator step; None = auto: n/{AUTO_BATCH_DIVISOR} rounded "
                                          f"down to a power of two in [{AUTO_BATCH[0]}, {AUTO_BATCH[1]}]", type=int,
                                    within="[1, inf)", hint="or omit it for the automatic batch size")
    lr: float = option(2e-3, "peak AdamW learning rate (paper: 1e-4 to 3e-4 over 120–250 epochs: --preset paper)",
                       within="(0, inf)")
    warmup: float = option(0.05, "fraction of the updates over which the learning rate rises linearly from 0",
                           within="[0, 1)")
    ema: float = option(0.999, "decay of the moving average of the weights that sampling uses; 0 = off", within="[0, 1)")
    weight_decay: float = option(1e-4, "AdamW weight decay (paper: ~1e-4)", within="[0, inf)")
    grad_clip: float = option(1.0, "gradient-norm clipping threshold (paper: 1.0)", within="(0, inf)")
    restart_epochs: int = option(0, "cosine warm-restart period in epochs; 0 = one cosine decay over all epochs",
                                 within="[0, inf)")
    patience: int | None = option(None, "early stopping: stop after this many epochs without validation "
                                        "improvement, counted only in the last half of the budget, and keep the best "
                                        "epoch's weights (paper: 25–30); None = off: the whole budget runs and the "
                                        "final weights are kept", type=int, within="[1, inf)",
                                  hint="or omit it to train the whole budget")
    checkpoint_every: int = option(1, "epochs between checkpoints when fit writes one", within="[1, inf)")
    augment: str = option("", "augmentations in generator steps, comma-separated: hflip (mirror half the images), "
                              "shift (move them by up to 2 px); never in NeuroSQL's cost matrix; empty = none")
    val_fraction: float = option(0.1, "fraction of training images held out for validation when none are given",
                                 within="[0, 1)")
    seed: int = option(0, "random seed for initialisation, shuffling and the lattice", within=f"[0, {MAX_SEED}]")
    device: str = option("auto", "'auto' (CUDA, then Apple's MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    progress: bool = option(True, "show a progress bar with ETA and the current loss")

    # Not parameters: what a method's config imposes (NeuroSQL's: Alg. 2's m, and validation every K epochs)
    fixed_batch = None  # a batch size that overrides batch_size
    validate_every = 1  # epochs between validations (and the last)

    def validate(self) -> None:
        """Raise NeuroSQLError for values no run can use: each field's declaration (see
        :func:`neurosql.engine.config.check_config`), then what involves several fields."""
        check_config(self)
        if self.epochs and self.steps:
            raise NeuroSQLError(f"give the budget once: --epochs {self.epochs} or --steps {self.steps}, not both")
        parse_augmentations(self.augment)
        resolve_device(self.device)

    def budget(self, n: int, batch_size: int | None = None, n_batches=None, volumes: bool = False) -> Budget:
        """The budget for ``n`` training images (``volumes``: 3-D ones, whose floor is AUTO_MIN_STEPS_VOLUMES).

        ``batch_size`` overrides ``fixed_batch`` and the configured one (a resume keeps the run's);
        ``n_batches(n, batch_size)`` counts the updates of an epoch (default:
        ceil(n / batch_size); data-parallel runs count per process). The
        automatic batch keeps ≥ ~16 updates per epoch on small sets; the
        automatic budget keeps ≥ AUTO_STEPS[0] updates however small n is.
        """
        b = batch_size or self.fixed_batch or self.batch_size or auto_batch_size(n)
        per_epoch = n_batches(n, b) if n_batches else max(1, -(-n // b))
        if self.epochs:
            epochs = self.epochs
        else:
            floor = AUTO_MIN_STEPS_VOLUMES if volumes else AUTO_STEPS[0]
            steps = self.steps or min(max(AUTO_EPOCHS * per_epoch, floor), AUTO_STEPS[1])
            epochs = -(-steps // per_epoch)
        return Budget(b, per_epoch, epochs)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise NeuroSQLError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**values)


def auto_batch_size(n: int) -> int:
    """n / AUTO_BATCH_DIVISOR rounded down to a power of two, clamped to AUTO_BATCH."""
    target = max(n // AUTO_BATCH_DIVISOR, 1)
    return min(max(1 << (target.bit_length() - 1), AUTO_BATCH[0]), AUTO_BATCH[1])


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


def add_config_arguments(parser: argparse.ArgumentParser, *config_classes, only=None, owners=None) -> None:
    """One ``--flag`` per field of the ``config_classes`` (a field they share once), or of the
    names in ``only``. ``owners`` (class → method name) adds to a field's help which methods have it."""
    seen = set()
    for f in (f for cls in config_classes for f in fields(cls)):
        if (only is not None and f.name not in only) or f.name in seen:
            continue
        seen.add(f.name)
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        having = [name for cls, name in (owners or {}).items() if f.name in cls.__dataclass_fields__]
        scope = f"{', '.join(having)} only; " if owners and len(having) < len(owners) else ""
        help_text = f"{f.metadata.get('help', '')} ({scope}default: {'auto' if default is None else default})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %: a literal one must be doubled
        flags = (*f.metadata.get("short", ()), flag)
        if isinstance(default, bool):
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            kind = f.metadata.get("type", type(default))
            parser.add_argument(*flags, type=auto_or(kind) if f.metadata.get("auto_word") else kind,
                                default=argparse.SUPPRESS, choices=f.metadata.get("choices"), help=help_text)


def auto_or(kind: type):
    """A flag's parser taking the word 'auto' for None (the field's automatic value), else a ``kind``."""
    def parse(text: str):
        if text == "auto":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or {TYPE_NAMES.get(kind, kind.__name__)}, got {text!r}") from None
    return parse


def given_values(args: argparse.Namespace, *config_classes, only=None) -> dict:
    """The fields of the ``config_classes`` (or of ``only``) given on the command line, by name."""
    return {f.name: getattr(args, f.name) for cls in config_classes for f in fields(cls)
            if hasattr(args, f.name) and (only is None or f.name in only)}


def merged_config(config_cls: type, method: str, recorded: dict, preset: str | None, given: dict):
    """The validated config of a run: the fields of a recorded run (``train --config``), under the
    preset's, under the flags ``given``; a budget given or preset replaces the recorded one, and a
    flag the method does not have is refused."""
    foreign = sorted(name for name in given if name not in config_cls.__dataclass_fields__)
    if foreign:
        flags = ", ".join("--" + flag_name(name) for name in foreign)
        raise NeuroSQLError(f"{flags} does not apply to --method {method}; drop it (see 'neurosql train --help')")
    kept = {k: v for k, v in recorded.items() if k in config_cls.__dataclass_fields__}
    chosen = {k: v for k, v in PRESETS.get(preset, {}).items() if k in config_cls.__dataclass_fields__}
    if {"epochs", "steps"} & {*given, *chosen}:  # a budget given replaces the recorded one
        kept.pop("epochs", None), kept.pop("steps", None)
    config = config_cls.from_dict({**kept, **chosen, **given})
    config.validate()
    return config


@dataclass
class CommandOptions:
    """The numbers a command takes besides its files, declared like a config and checked the same way."""

    @classmethod
    def from_args(cls, args: argparse.Namespace):
        """The options given on the command line over their defaults, checked."""
        options = cls(**given_values(args, cls))
        check_config(options)
        return options


@dataclass
class SampleOptions(CommandOptions):
    """``neurosql sample``."""

    num: int = option(64, "number of images", within="[1, inf)", short=("-n",))
    seed: int = option(0, "sampling seed", within=f"[0, {MAX_SEED}]")


@dataclass
class EvaluateOptions(CommandOptions):
    """``neurosql evaluate``."""

    num: int = option(2048, "real and generated images per feature metric", within="[2, inf)", short=("-n",))
    seed: int = option(0, "metric sampling seed", within=f"[0, {MAX_SEED}]")
    downstream: bool = option(True, "train a classifier on generated images, test on real ones (when labelled)")
    n_synthetic: int = option(10_000, "generated images for the downstream classifier", within="[10, inf)")
    classifier_epochs: int = option(10, "downstream classifier epochs", within="[1, inf)")
    refine_steps: int = option(0, "gradient steps refining held-out codes", within="[0, inf)")


@dataclass
class EncodeOptions(CommandOptions):
    """``neurosql encode``."""

    refine_steps: int = option(0, "Adam steps refining the codes of images not trained on, minimising ℓ",
                               within="[0, inf)")
