"""`hodei-server`: run one server replica; its subcommands prepare what a deployment needs."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from hodei_server import config as config_mod
from hodei_server.app import serve, setup_logging
from hodei_server.cli import certs, secret_key, token
from hodei_server.cli.reporting import ReportingGroup, remember_debug

app = typer.Typer(
    cls=ReportingGroup,
    name="hodei-server",
    help="Run a Hodei server. `hodei-server token create --help`: a bootstrap token for an "
         "agent on another machine, or (--api) an API token such as the first admin's; "
         "`hodei-server certs init --help`: a CA and a server certificate for TLS; "
         "`hodei-server secret-key --help`: the key of the built-in secret store.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(token.app, name="token")
app.add_typer(certs.app, name="certs")
app.add_typer(secret_key.app, name="secret-key")


async def run_until_signalled(config: config_mod.ServerConfig, ready_file: Path | None) -> None:
    """Serve until SIGTERM or SIGINT; once serving, write `ready_file` if given."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def on_ready(address: str) -> None:
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "address": address}))
            tmp.replace(ready_file)

    await serve(config, stop, on_ready=on_ready)


class LogFormat(enum.StrEnum):
    """How the server logs."""

    text = "text"
    json = "json"


@app.callback()
def run_server(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="TOML configuration file")] = None,
    listen: Annotated[str | None, typer.Option(
        "--listen", help="HOST:PORT to listen on (default 127.0.0.1:50051)")] = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL URL (env HODEI_DATABASE_URL)")] = None,
    ready_file: Annotated[Path | None, typer.Option(
        "--ready-file",
        help='write {"pid", "address"} as JSON here once serving (for scripts and tests)',
    )] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", envvar="HODEI_LOG_FORMAT",
        help="text lines, or one JSON object a line (level, time, message, job, attempt, "
             "worker and correlation ids)")] = LogFormat.text,
    debug: Annotated[bool, typer.Option(
        "--debug", help="show tracebacks", callback=remember_debug)] = False,
) -> None:
    """Without a subcommand: run the server."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(log_level, log_format.value)
    # Agents that providers start on this host log the same way.
    os.environ["HODEI_LOG_FORMAT"] = log_format.value
    settings = config_mod.load(config)
    if listen:
        settings.listen = listen
    if database_url:
        settings.database_url = database_url
    asyncio.run(run_until_signalled(settings, ready_file))


def main() -> None:
    """Console-script entry point: `hodei-server`."""
    app(prog_name="hodei-server")
