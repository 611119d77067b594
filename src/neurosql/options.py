"""Config dataclass fields as command-line flags, written once for every command.

Each field becomes ``--field-name`` with the field's help and default. Flags a
user does not give stay out of the parsed namespace (``argparse.SUPPRESS``), so
:func:`given_values` returns exactly what was typed and a preset can fill the rest.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields


def add_config_arguments(parser: argparse.ArgumentParser, config_cls, only=None) -> None:
    """One ``--flag`` per field of ``config_cls`` (or of the names in ``only``)."""
    for f in fields(config_cls):
        if only is not None and f.name not in only:
            continue
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {'auto' if default is None else default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=f.metadata.get("type", type(default)), default=argparse.SUPPRESS,
                                choices=f.metadata.get("choices"), help=help_text)


def given_values(args: argparse.Namespace, config_cls, only=None) -> dict:
    """The fields of ``config_cls`` (or of ``only``) given on the command line, by name."""
    return {f.name: getattr(args, f.name) for f in fields(config_cls)
            if hasattr(args, f.name) and (only is None or f.name in only)}
