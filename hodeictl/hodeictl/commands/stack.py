"""`hodeictl up | down | status`: the embedded local stack."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from hodeictl.errors import EXIT_UNAVAILABLE, HodeiCtlError
from hodeictl.output import display_path, note

if TYPE_CHECKING:
    from hodeictl.embedded import StackInfo

# `status` exits like `systemctl status`: 3 when the stack is not running.
EXIT_NOT_RUNNING = 3


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def up(
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start it in the background and return.")
    ] = False,
) -> None:
    """Start the embedded local stack (PostgreSQL, server, local workers)."""
    from hodeictl import embedded

    home = embedded.home_dir()
    if not detach:
        raise typer.Exit(embedded.run_foreground(home, embedded.database_url()))
    with embedded.stack_lock(home):
        info = embedded.read_stack(home)
        if info is None:
            embedded.start_detached(home, embedded.database_url())
            return
    note(f"A local Hodei stack is already running at {info.address} (pid {info.pid}).")


def down() -> None:
    """Stop the embedded local stack."""
    from hodeictl import embedded

    note(embedded.stop(embedded.home_dir()))


async def _server_status(info: StackInfo) -> str | None:
    """How the server is doing, or None if it does not answer. The calls carry the stack's
    own token, as every other command's do (without it the server refuses, and audits)."""
    from hodeictl.client import HodeiClient, server_answers

    address = info.address
    if not await server_answers(address):
        return None
    try:
        async with HodeiClient(address, info.token) as client:
            workers = len(await client.list_workers())
    except HodeiCtlError as error:
        return f"answering (cannot list workers: {error})"
    return f"answering, {workers} worker{'' if workers == 1 else 's'}"


def status() -> None:
    """Is the embedded stack running, where, and does its server answer."""
    import asyncio

    from hodeictl import embedded

    home = embedded.home_dir()
    info = embedded.read_stack(home)
    typer.echo(f"Home:      {display_path(home)}")
    if info is None:
        typer.echo("Stack:     not running (start it with 'hodeictl up')")
        raise typer.Exit(EXIT_NOT_RUNNING)
    started = datetime.datetime.fromtimestamp(info.started_at).strftime("%Y-%m-%d %H:%M:%S")
    typer.echo(f"Stack:     running (pid {info.pid}, since {started})")
    typer.echo(f"Address:   {info.address}")
    typer.echo(f"Database:  {_redacted(info.database_url) or '-'}")
    typer.echo(f"Logs:      {display_path(home / 'stack.log')}")
    server = asyncio.run(_server_status(info))
    typer.echo(f"Server:    {server or 'not answering'}")
    if server is None:
        raise typer.Exit(EXIT_UNAVAILABLE)


def version(
    ctx: typer.Context,
    client_only: Annotated[
        bool, typer.Option("--client", help="Only hodeictl's own version.")
    ] = False,
) -> None:
    """Show hodeictl's version and the version of the server it talks to.

    The local stack is asked only when it is running: this never starts it.
    """
    import importlib.metadata

    from hodeictl import completion, target

    typer.echo(f"hodeictl {importlib.metadata.version('hodei')}")
    if client_only:
        return
    settings = ctx.obj
    if not (settings.server or settings.context or _configured_context()):
        probe = completion.local_stack_settings()
        if probe is None:
            typer.echo("server   - (the local stack is not running; hodeictl up)")
            return
        settings = probe
    info = target.call(settings, lambda client: client.server_info())
    typer.echo(f"server   {info.version} ({settings.address()})")


def _configured_context() -> bool:
    from hodeictl.config import LOCAL_CONTEXT, Config

    current = Config.load().current_context
    return bool(current and current != LOCAL_CONTEXT)
