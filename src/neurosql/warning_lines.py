"""Warnings as the command line shows them: one ``warning: <message>`` line on stderr, instead of
Python's ``file.py:123: UserWarning: …`` followed by a source line. The API keeps Python's own format."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager


def warning_line(message) -> str:
    """A warning's message as one line (a multi-line message joined by '; ')."""
    return "warning: " + "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


@contextmanager
def one_line_warnings():
    """Within the block every warning shown (each once per place, Python's default) is one line on stderr."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(warning_line(message), file=sys.stderr if file is None else file)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
