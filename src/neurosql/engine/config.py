"""Config fields declared once: each field's default, help, choices and bounds sit next to it
(like scikit-learn's ``_parameter_constraints``) and one function, :func:`check_config`, checks
them all: the type (no bool for a number, no NaN or Inf), the choices, the interval."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import field, fields
from typing import Any, NamedTuple

import numpy as np

from ..errors import NeuroSQLError

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
