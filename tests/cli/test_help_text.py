"""Every option's help text reaches `--help` whole: typer renders help through rich markup, which
silently dropped a bracketed "[default: ...]" from nine options before this test."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from typer.main import get_command

from wam.cli import app


def _commands(command: Any, path: str = "wam"):
    """(path, command) of `command` and every subcommand (typer's own click types: duck-typed)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_no_help_text_is_eaten_by_rich_markup() -> None:
    eaten, options = [], 0
    for path, command in _commands(get_command(app)):
        options += len(command.params)
        for param in command.params:
            text = getattr(param, "help", None)
            if text and Text.from_markup(text).plain != text:
                eaten.append(f"{path} {param.opts[0]}: {text!r}")
    assert options > 100 and not eaten, eaten
