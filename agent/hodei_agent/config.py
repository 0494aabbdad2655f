"""The agent's settings, from its command line and environment."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from hodei_agent import jsonlog
from hodei_agent.errors import ConfigError
from hodei_agent.metrics import detect_cpus, detect_memory_mb
from hodei_agent.statedir import IDENTITY_FILE

TOKEN_ENV = "HODEI_BOOTSTRAP_TOKEN"
SERVER_ENV = "HODEI_SERVER"
NAME_ENV = "HODEI_WORKER_NAME"
SLOTS_ENV = "HODEI_SLOTS"
LABELS_ENV = "HODEI_LABELS"
CA_CERT_ENV = "HODEI_CA_CERT"
STATE_DIR_ENV = "HODEI_AGENT_STATE_DIR"
CGROUPS_ENV = "HODEI_AGENT_CGROUPS"
CGROUPS_CHOICES = ("auto", "off")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to register and run jobs."""

    servers: tuple[str, ...]
    bootstrap_token: str
    name: str
    hostname: str
    slots: int
    labels: dict[str, str]
    cpus: float
    memory_mb: int
    drain_grace: float
    log_level: str
    # "text" or "json" (hodei_agent.jsonlog).
    log_format: str = "text"
    # Serve /metrics on HOST:PORT ("" = off; needs prometheus-client).
    metrics_listen: str = ""
    # PEM of the CA that signed the server's certificate; None: plaintext (loopback only,
    # unless `insecure`).
    ca_cert: bytes | None = None
    # Where the agent keeps its identity, its key and certificate, and its jobs' output;
    # None: a temporary directory, and nothing survives the agent.
    state_dir: Path | None = None
    # Contain each job in a cgroup of its own where cgroup v2 can be written (else, and when
    # False, in its process group only).
    cgroups: bool = True


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="hodei-agent",
        description="Hodei worker agent: registers with a Hodei server and runs its jobs.",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help=f"server address; repeat or comma-separate for failover (env {SERVER_ENV})",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the one-time bootstrap token (else env {TOKEN_ENV})",
    )
    parser.add_argument("--name", help=f"worker name (env {NAME_ENV}; default <hostname>-<pid>)")
    parser.add_argument("--slots", help=f"jobs run at once (env {SLOTS_ENV}; default 4)")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"worker label, repeatable (env {LABELS_ENV} as k=v,k2=v2)",
    )
    parser.add_argument("--cpus", help="CPUs offered to jobs (default: detected)")
    parser.add_argument("--memory-mb", help="memory in MiB offered to jobs (default: detected)")
    parser.add_argument(
        "--drain-grace",
        default="30",
        metavar="SECONDS",
        help="on drain, how long running jobs may finish before they are cancelled (default 30)",
    )
    parser.add_argument(
        "--ca-cert",
        type=Path,
        metavar="PATH",
        help=f"CA certificate that signed the server's: speak TLS and register for a client "
             f"certificate (env {CA_CERT_ENV})",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help=f"keep the worker identity, its key and certificate and the jobs' output here, so "
        f"that a restarted agent is the same worker and re-attaches to the jobs still running "
        f"(env {STATE_DIR_ENV}; default: a temporary directory, nothing survives the agent)",
    )
    parser.add_argument(
        "--cgroups",
        type=str.lower,
        metavar="auto|off",
        help=f"auto: run each job in a cgroup of its own where cgroup v2 can be written, so "
        f"that whatever it starts dies with it; off: in its process group only (env "
        f"{CGROUPS_ENV}; default auto)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext to a server that is not on loopback",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging threshold (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("HODEI_LOG_FORMAT", "text"),
        choices=jsonlog.FORMATS,
        help="text lines, or one JSON object a line with job, attempt, worker and "
             "correlation ids (env HODEI_LOG_FORMAT; default text)",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get("HODEI_AGENT_METRICS_LISTEN", ""),
        help="serve Prometheus metrics of this agent's jobs on http://HOST:PORT/metrics "
             "(needs prometheus-client; env HODEI_AGENT_METRICS_LISTEN; default off)",
    )
    return parser


def parse_server(address: str) -> str:
    """Validate one HOST:PORT (IPv6 hosts in brackets) and return it stripped."""
    address = address.strip()
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an unbracketed IPv6 address is ambiguous
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server address {address!r} is not HOST:PORT (e.g. localhost:50051)")
    return address


def parse_labels(pairs: Sequence[str], source: str) -> dict[str, str]:
    """Turn ["k=v", ...] into a dict; `source` names the option in error messages."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{source}: label {pair!r} is not KEY=VALUE")
        labels[key] = value.strip()
    return labels


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _integer(text: str, option: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{option} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{option} must be at least {minimum}, got {text!r}")
    return value


def _float(text: str, option: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{option} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"{option} must be {bound}, got {text!r}")
    return value


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_ca(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--ca-cert: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(f"--ca-cert: {path} holds no PEM certificate")
    return data


def _read_token(
    token_file: Path | None, environ: MutableMapping[str, str], *, required: bool = True
) -> str:
    # Read and forget the env token whatever happens, so no job ever inherits it.
    env_token = environ.pop(TOKEN_ENV, "").strip()
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"--token-file: {token_file} is empty")
        return token
    if not env_token and required:
        raise ConfigError(f"no bootstrap token: set {TOKEN_ENV} or pass --token-file PATH")
    return env_token


def parse_config(
    argv: Sequence[str] | None = None, environ: MutableMapping[str, str] | None = None
) -> AgentConfig:
    """Build the configuration; raises `ConfigError` with a one-line fix-it message.

    `environ` defaults to `os.environ`; the bootstrap token is removed from it.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    args = _build_parser().parse_args(argv)

    server_args = [item for value in args.server for item in _split_list(value)]
    if not server_args:
        server_args = _split_list(env.get(SERVER_ENV, ""))
    if not server_args:
        raise ConfigError(f"no server: pass --server HOST:PORT or set {SERVER_ENV}")
    servers = tuple(parse_server(address) for address in server_args)

    state_dir = args.state_dir
    if state_dir is None and env.get(STATE_DIR_ENV):
        state_dir = Path(env[STATE_DIR_ENV])
    # An agent that registered before keeps its identity there and needs no token.
    has_identity = state_dir is not None and (state_dir / IDENTITY_FILE).is_file()
    if args.ca_cert or env.get(CA_CERT_ENV):
        has_identity = False  # over TLS a restarted agent registers anew
    token = _read_token(args.token_file, env, required=not has_identity)
    hostname = socket.gethostname()
    labels = parse_labels(_split_list(env.get(LABELS_ENV, "")), LABELS_ENV)
    labels.update(parse_labels(args.label, "--label"))
    slots = _integer(args.slots or env.get(SLOTS_ENV) or "4", f"--slots/{SLOTS_ENV}", 1)
    cpus = _float(args.cpus, "--cpus", allow_zero=False) if args.cpus else detect_cpus()
    memory_mb = _integer(args.memory_mb, "--memory-mb", 1) if args.memory_mb else (
        detect_memory_mb())
    drain_grace = _float(args.drain_grace, "--drain-grace", allow_zero=True)
    cgroups = (args.cgroups or env.get(CGROUPS_ENV) or "auto").strip().lower()
    if cgroups not in CGROUPS_CHOICES:
        raise ConfigError(f"--cgroups/{CGROUPS_ENV} must be auto or off, got {cgroups!r}")
    ca_path = args.ca_cert or (Path(env[CA_CERT_ENV]) if env.get(CA_CERT_ENV) else None)
    ca_cert = _read_ca(ca_path)
    if ca_cert is None and not args.insecure:
        remote = [s for s in servers if not _is_loopback(s)]
        if remote:
            raise ConfigError(
                f"{remote[0]} is not a loopback address: pass --ca-cert PATH (the CA that "
                "signed the server's certificate) to speak TLS, or --insecure for plaintext"
            )
    return AgentConfig(
        servers=servers,
        bootstrap_token=token,
        name=args.name or env.get(NAME_ENV) or f"{hostname}-{os.getpid()}",
        hostname=hostname,
        slots=slots,
        labels=labels,
        cpus=cpus,
        memory_mb=memory_mb,
        drain_grace=drain_grace,
        log_level=args.log_level,
        log_format=args.log_format,
        metrics_listen=args.metrics_listen,
        ca_cert=ca_cert,
        state_dir=state_dir,
        cgroups=cgroups == "auto",
    )
