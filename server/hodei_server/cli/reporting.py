"""The one way `hodei-server` and its subcommands report a failure: one line, exit 1.

A HodeiError, a plugin's error or an OS error (a file that can't be read or written)
is printed as `PROG: message` on stderr, PROG being the command group that failed
(`hodei-server`, `hodei-server token`, ...); `--debug` shows the traceback instead.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from hodei_plugins.errors import PluginError
from hodei_server.errors import HodeiError

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
_DEBUG = "hodei.debug"


def remember_debug(ctx: typer.Context, debug: bool) -> bool:
    """The `--debug` option's callback: failures of this command show their traceback."""
    if debug:
        ctx.meta[_DEBUG] = True
    return debug


def _message(error: Exception) -> str:
    if isinstance(error, HodeiError):
        return error.message
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror or error}{where}"
    return str(error)


class ReportingGroup(TyperGroup):
    """A command group that reports its commands' failures (see the module doc).

    Every group of the command line is one, so the innermost reports, with its own name.
    """

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (HodeiError, PluginError, OSError) as error:
            if ctx.meta.get(_DEBUG):
                raise
            typer.echo(f"{ctx.command_path}: {_message(error)}", err=True)
            raise typer.Exit(EXIT_FAILURE) from None
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
