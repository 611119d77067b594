"""docs/reproduce.md: every table and figure of the paper has an entry, and its commands parse."""

import re
import shlex
from pathlib import Path

import pytest

from neurosql.benchmark import _integers, _names, _resolved
from neurosql.cli import build_parser
from neurosql.core.generators import GENERATORS
from neurosql.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
REPRODUCE = ROOT / "docs" / "reproduce.md"


def commands() -> list[list[str]]:
    """The ``neurosql …`` commands of the bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", REPRODUCE.read_text(), re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("#")[0]) for line in lines if line.strip().startswith("neurosql ")]


def numbered(kind: str) -> set[int]:
    """Numbers in the "### Table(s) N[–M] —" or "### Figure N —" headings."""
    found = set()
    for first, last in re.findall(rf"^### {kind}s? (\d+)(?:–(\d+))? —", REPRODUCE.read_text(), re.MULTILINE):
        found |= set(range(int(first), int(last or first) + 1))
    return found


def test_every_table_and_figure_has_an_entry_linked_from_the_readme():
    assert numbered("Table") >= set(range(1, 20)) and numbered("Figure") >= set(range(2, 6))
    assert "(docs/reproduce.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("argv", commands(), ids=lambda argv: " ".join(argv[:3]))
def test_documented_commands_parse(argv):
    args = build_parser().parse_args(argv[1:])
    if args.command == "benchmark":
        options = _resolved(args)  # the preset's values where the command names one
        _names(options["methods"], METHODS, "methods")
        _names(options["generators"], GENERATORS, "generators")
        _integers(options["latent_dims"], "latent-dims", 1)
