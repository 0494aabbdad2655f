"""`certs init`: a CA and a server certificate for a deployment with TLS.

Run as `hodeictl certs init` (which runs this module, so hodeictl never imports the server)
or `hodei-server certs init`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a CA and a server certificate")
    init.add_argument("--dir", type=Path, default=Path("hodei-certs"),
                      help="where to write them (default ./hodei-certs)")
    init.add_argument("--host", action="append", default=[], metavar="NAME",
                      help="a DNS name or IP address agents and clients dial (repeatable); "
                           "localhost and 127.0.0.1 are always added")
    init.add_argument("--days", type=float, default=365.0,
                      help="validity of the server certificate in days (default 365)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


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


def main(argv: list[str], prog: str = "certs") -> int:
    args = _parser().parse_args(argv)
    try:
        paths = init(args.dir, args.host, args.days, args.force)
    except CertsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(_report(paths, args.host, args.days))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], "hodeictl certs"))
