"""The `wam` command line: thin wrappers that parse, call library functions and print.

Each command group lives in `wam.commands.<name>` and registers itself on `app`; command modules
import heavy libraries (torch, MuJoCo) inside the command functions so `wam --help` stays fast.
Expected mistakes (bad names, missing files) are reported as one line, not a traceback;
set WAM_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="wam",
    help="World Action Models for robot manipulation: collect, train, evaluate, serve, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UserError(Exception):
    """An expected mistake: printed as one line, exit code 2."""


def _register() -> None:
    from wam.commands import register_all

    register_all(app)


_register()


def main() -> None:
    """Entry point with one-line errors for expected mistakes."""
    try:
        app()
    except (UserError, ValueError, FileNotFoundError, FileExistsError) as err:
        if os.environ.get("WAM_DEBUG"):
            raise
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
