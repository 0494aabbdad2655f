"""Registers the `ssh` provider and `hodeictl host ...` (entry point `ssh` of group `hodei`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hodei_plugins.spec import hookimpl

if TYPE_CHECKING:
    import typer


@hookimpl
def hodei_register_providers() -> list[type]:
    try:
        from hodei_ssh.provider import SshProvider
    except ImportError:  # hodei[ssh] is not installed
        return []
    return [SshProvider]


@hookimpl
def hodei_add_cli_commands(app: typer.Typer) -> None:
    from hodei_ssh.cli import app as host_app

    app.add_typer(host_app, name="host")
