"""`hodeictl tui`: the live console. Textual is imported only when the command runs."""

from __future__ import annotations

from typing import Annotated

import typer

from hodeictl.errors import UsageError

SCREENS = ("dashboard", "jobs", "workers", "providers", "secrets", "tokens", "audit")


def tui(
    ctx: typer.Context,
    read_only: Annotated[
        bool, typer.Option("--read-only", envvar="HODEI_TUI_READ_ONLY",
                           help="Offer no action: no submit, cancel, retry or drain."),
    ] = False,
    screen: Annotated[
        str, typer.Option("--screen", metavar="NAME",
                          help="The screen to open: " + ", ".join(SCREENS) + "."),
    ] = "jobs",
) -> None:
    """The operator's live console: jobs, their output, workers, fed by the server."""
    if screen not in SCREENS:
        raise UsageError(f"--screen: {screen!r} is not one of " + ", ".join(SCREENS))
    from hodeictl import tui as console

    console.run(ctx.obj, read_only=read_only, screen=screen)
