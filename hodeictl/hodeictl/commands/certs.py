"""`hodeictl certs init`: a CA and a server certificate for a deployment with TLS.

The certificates are made by `hodei_server.cli.certs` in a child process (it needs the
`cryptography` package of the server extra), so hodeictl itself never imports the server.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from hodeictl import values
from hodeictl.errors import HodeiCtlError, UsageError

app = typer.Typer(rich_markup_mode=None,
                  help="Certificates for running Hodei with TLS.", no_args_is_help=True)

CERTS_MODULE = "hodei_server.cli.certs"
# The CA's own lifetime, which the server certificate cannot outlive.
MAX_DAYS = 3650.0


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Option("--dir", metavar="DIR", help="Where to write the files.")
    ] = Path("hodei-certs"),
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", metavar="NAME", parser=values.host,
                     help="A DNS name or IP address the server is dialled at (repeatable); "
                          "localhost and 127.0.0.1 are always included."),
    ] = None,
    days: Annotated[
        float,
        typer.Option("--days", metavar="DAYS", parser=values.number(0, MAX_DAYS, above_low=True),
                     help=f"Validity of the server certificate in days (at most {MAX_DAYS:g})."),
    ] = 365.0,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Create a CA (ca.key, ca.crt) and a server certificate (server.key, server.crt).

    Keys are written with mode 0600; existing files are kept unless --force.
    """
    if importlib.util.find_spec("hodei_server") is None:  # a top-level lookup imports nothing
        raise UsageError("certs init needs the server extra: pip install 'hodei[server]'")
    argv = [sys.executable, "-m", CERTS_MODULE, "init", "--dir", str(directory),
            "--days", str(days)]
    for host in hosts or []:
        argv += ["--host", host]
    if force:
        argv.append("--force")
    # File names need not be UTF-8: show their other bytes as \xNN.
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="backslashreplace")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        message = lines[-1] if lines else f"certs init failed (exit {done.returncode})"
        raise HodeiCtlError(message.removeprefix("hodeictl certs: "))
    typer.echo(done.stdout, nl=False)
