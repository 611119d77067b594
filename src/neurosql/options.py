"""Config dataclass fields as command-line flags, written once for every command.

Each field becomes ``--field-name`` with the field's help and default. Flags a
user does not give stay out of the parsed namespace (``argparse.SUPPRESS``), so
:func:`given_values` returns exactly what was typed and a preset can fill the rest.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from .engine.config import TYPE_NAMES


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
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            kind = f.metadata.get("type", type(default))
            parser.add_argument(flag, type=auto_or(kind) if f.metadata.get("auto_word") else kind,
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
