"""``--version`` on every command, and help text that reads as plain text (no reST markup)."""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version

import pytest

from mcp_cascade.cli import build_parser, main


def _commands() -> list[str]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


COMMANDS = _commands()


@pytest.mark.parametrize("argv", [["--version"], *([c, "--version"] for c in COMMANDS)])
def test_version_is_printed_by_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mcp-cascade {version('mcp-cascade')}"


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in COMMANDS)])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    text = capsys.readouterr().out
    assert text.startswith("usage: mcp-cascade")
    assert not re.search(r"``|:(func|class|mod|meth|attr):`|\*\*", text), text
