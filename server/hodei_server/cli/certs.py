"""`certs init`: a CA and a server certificate for a deployment with TLS.

Run as `hodeictl certs init` (which runs this module, so hodeictl never imports the server)
or `hodei-server certs init`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from hodei_server.cli.reporting import ReportingGroup
from hodei_server.errors import HodeiError
from hodei_server.security import pki

CA_DAYS = 3650.0
FILES = {
    "ca.key": "the CA's private key: only the server host needs it (it signs agent "
              "certificates)",
    "ca.crt": "the CA certificate: agents (--ca-cert) and hodeictl (--ca-cert) trust it",
    "server.key": "the server's private key",
    "server.crt": "the server's certificate",
}


class CertsError(HodeiError):
    """One line for the operator."""


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def init(directory: Path, hosts: list[str], days: float, force: bool) -> dict[str, Path]:
    """Write the four files; returns name -> path. Refuses to overwrite unless `force`."""
    if not 0 < days <= CA_DAYS:
        raise CertsError(f"--days must be between 0 and {CA_DAYS:g}")
    for host in hosts:
        if not host or any(c.isspace() or c in "/:@" for c in host):
            raise CertsError(f"--host {host!r} is not a host name or an IP address")
    directory = directory.expanduser().resolve()
    paths = {name: directory / name for name in FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise CertsError(f"{', '.join(existing)} already exist; pass --force to replace them "
                         "(agents holding certificates of the old CA must register again)")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca_key, ca_cert = pki.create_ca("Hodei CA", CA_DAYS)
        server_key, server_cert = pki.create_server_cert(ca_key, ca_cert, hosts, days)
        _write(paths["ca.key"], ca_key, 0o600)
        _write(paths["ca.crt"], ca_cert, 0o644)
        _write(paths["server.key"], server_key, 0o600)
        _write(paths["server.crt"], server_cert, 0o644)
    except OSError as exc:
        raise CertsError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    return paths


def _report(paths: dict[str, Path], hosts: list[str], days: float) -> str:
    names = pki.certificate_names(paths["server.crt"].read_bytes())
    host = hosts[0] if hosts else "127.0.0.1"
    lines = ["Wrote:"]
    for name, path in paths.items():
        private = " (mode 0600)" if name.endswith(".key") else ""
        lines.append(f"  {path}{private}: {FILES[name]}")
    lines += [
        f"The server certificate is valid for {days:g} days for: {', '.join(names)}.",
        "",
        "Server configuration (server.toml):",
        '  listen = "0.0.0.0:50051"          # agents stream on the next port (agent_listen)',
        f'  tls_cert = "{paths["server.crt"]}"',
        f'  tls_key = "{paths["server.key"]}"',
        f'  ca_cert = "{paths["ca.crt"]}"',
        f'  ca_key = "{paths["ca.key"]}"',
        "  agent_cert_days = 7.0",
        "",
        "An agent:",
        f"  hodei-agent --server {host}:50051 --ca-cert {paths['ca.crt']} --state-dir DIR",
        "hodeictl:",
        f"  hodeictl context set NAME --server {host}:50051 --ca-cert {paths['ca.crt']}",
    ]
    return "\n".join(lines)


app = typer.Typer(
    cls=ReportingGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def certs() -> None:
    """Certificates for running Hodei with TLS."""


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Option(
        "--dir", help="where to write them")] = Path("hodei-certs"),
    hosts: Annotated[list[str] | None, typer.Option(
        "--host", metavar="NAME",
        help="a DNS name or IP address agents and clients dial (repeatable); localhost and "
             "127.0.0.1 are always added")] = None,
    days: Annotated[float, typer.Option(
        "--days", help="validity of the server certificate in days")] = 365.0,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
) -> None:
    """Create a CA and a server certificate."""
    paths = init(directory, hosts or [], days, force)
    typer.echo(_report(paths, hosts or [], days))


def main(argv: list[str], prog: str = "hodeictl certs") -> int:
    """Run `certs` with `argv` (hodeictl runs this module); the exit code."""
    try:
        app(args=argv, prog_name=prog)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
