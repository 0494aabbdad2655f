"""SSH connections to registered hosts, with their host keys checked, always.

Three ways to trust a host key, never "accept anything":
- `known_hosts` (default): the operator's known_hosts file ($HODEI_SSH_KNOWN_HOSTS, else
  ~/.ssh/known_hosts) must list the key;
- `pinned`: the key pinned in the registry (`hodeictl host trust`, `--fingerprint`);
- `tofu`: asked for by name at `host add`; the first key seen is pinned, then as `pinned`.
A key that is not the trusted one is refused in one line naming both fingerprints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hodei_ssh.errors import HostError, HostKeyError
from hodei_ssh.registry import Host
from hodei_ssh.sshlib import asyncssh

CONNECT_TIMEOUT = 20.0
MAX_JUMPS = 4

# (host name) -> Host: how a jump host is looked up.
Lookup = Callable[[str], Awaitable[Host]]
# Called with a host and the key first seen for it (trust on first use): pin it.
Pinner = Callable[[Host, str, str], Awaitable[None]]


def known_hosts_path() -> Path:
    explicit = os.environ.get("HODEI_SSH_KNOWN_HOSTS")
    return Path(explicit).expanduser() if explicit else Path.home() / ".ssh" / "known_hosts"


def fingerprint(key: asyncssh.SSHKey) -> str:
    return str(key.get_fingerprint("sha256"))


def openssh_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def fingerprint_of_line(line: str) -> str:
    return fingerprint(asyncssh.import_public_key(line))


@dataclass
class _Seen:
    key: asyncssh.SSHKey | None = None


class _Client(asyncssh.SSHClient):
    """Records the key the server presented; accepts it only if `accept` says so."""

    def __init__(self, seen: _Seen, accept: Callable[[asyncssh.SSHKey], bool]) -> None:
        self._seen = seen
        self._accept = accept

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self._seen.key = key
        return self._accept(key)


def _known_fingerprints(host: Host) -> list[str]:
    path = known_hosts_path()
    try:
        trusted = asyncssh.read_known_hosts(str(path)).match(host.address, host.address,
                                                            host.port)[0]
    except (OSError, ValueError):
        return []
    return list(dict.fromkeys(fingerprint(key) for key in trusted))


def _host_key_refusal(host: Host, seen: asyncssh.SSHKey | None) -> HostKeyError:
    new = fingerprint(seen) if seen is not None else "(none)"
    if host.host_key_mode == "known_hosts":
        old = _known_fingerprints(host)
        if old:
            return HostKeyError(host.name, "host key", (
                f"CHANGED: {known_hosts_path()} has {', '.join(old)}, the host presented "
                f"{new}; refusing to connect"))
        return HostKeyError(host.name, "host key", (
            f"{new} is not in {known_hosts_path()}; check it and run `hodeictl host trust "
            f"{host.name}` to pin it"))
    return HostKeyError(host.name, "host key", (
        f"CHANGED: pinned {host.fingerprint}, the host presented {new}; refusing to connect "
        f"(if the change is expected, run `hodeictl host trust {host.name}` again)"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def _connect_one(host: Host, tunnel: Any, pin: Pinner | None) -> Any:
    seen = _Seen()
    options: dict[str, Any] = {
        "port": host.port, "username": host.username, "config": None,
        "connect_timeout": CONNECT_TIMEOUT, "login_timeout": CONNECT_TIMEOUT,
        "keepalive_interval": 15, "keepalive_count_max": 4,
    }
    if host.key_path:
        key_path = host.key_path  # made absolute by `host add`
        try:
            options["client_keys"] = [asyncssh.read_private_key(key_path)]
        except (OSError, asyncssh.KeyImportError) as exc:
            raise HostError(host.name, "connect",
                            f"cannot read the key {host.key_path}: {_first_line(exc)}") from None
        options["agent_path"] = None
    if tunnel is not None:
        options["tunnel"] = tunnel

    def accept(key: asyncssh.SSHKey) -> bool:
        if host.host_key_mode == "known_hosts":
            return False  # known_hosts matched it already, if it could
        if host.fingerprint:
            return fingerprint(key) == host.fingerprint
        return host.host_key_mode == "tofu"

    if host.host_key_mode == "known_hosts":
        path = known_hosts_path()
        options["known_hosts"] = str(path) if path.is_file() else ([], [], [])
    else:
        options["known_hosts"] = ([], [], [])
    try:
        conn = await asyncssh.connect(host.address, client_factory=lambda: _Client(seen, accept),
                                      **options)
    except asyncssh.HostKeyNotVerifiable:
        raise _host_key_refusal(host, seen.key) from None
    except asyncssh.PermissionDenied:
        with_key = f" with the key {host.key_path}" if host.key_path else ""
        raise HostError(host.name, "connect", (
            f"permission denied for user {host.username!r}{with_key} at "
            f"{host.address}:{host.port}; check --user and --key")) from None
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostError(host.name, "connect",
                        f"{host.address}:{host.port}: {_first_line(exc)}") from None
    if host.host_key_mode == "tofu" and not host.fingerprint and seen.key is not None \
            and pin is not None:
        await pin(host, openssh_line(seen.key), fingerprint(seen.key))
    return conn


@contextlib.asynccontextmanager
async def connect(host: Host, lookup: Lookup, pin: Pinner | None = None,
                  ) -> AsyncIterator[Any]:
    """An SSH connection to `host`, through its jump hosts (each checked the same way)."""
    chain = [host]
    while chain[-1].jump:
        if len(chain) > MAX_JUMPS:
            raise HostError(host.name, "connect", f"more than {MAX_JUMPS} jump hosts")
        chain.append(await lookup(chain[-1].jump))
    async with contextlib.AsyncExitStack() as stack:
        tunnel = None
        for hop in reversed(chain):
            conn = await _connect_one(hop, tunnel, pin)
            stack.push_async_callback(_close, conn)
            tunnel = conn
        yield tunnel


async def _close(conn: Any) -> None:
    conn.close()
    with contextlib.suppress(Exception):
        await conn.wait_closed()


async def presented_key(host: Host, lookup: Lookup) -> asyncssh.SSHKey:
    """The key `host` presents now (through its jump hosts), without logging in to it."""
    tunnel_cm: Any = contextlib.nullcontext(None)
    if host.jump:
        tunnel_cm = connect(await lookup(host.jump), lookup)
    async with tunnel_cm as tunnel:
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(
                host.address, host.port, tunnel=tunnel or (), config=None), CONNECT_TIMEOUT)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise HostError(host.name, "host key",
                            f"{host.address}:{host.port}: {_first_line(exc)}") from None
    if key is None:
        raise HostError(host.name, "host key", "the host presented no key")
    return key


async def run(conn: Any, host: str, step: str, command: str, *, stdin: str | None = None,
              timeout: float = 300.0, check: bool = True) -> Any:  # noqa: ASYNC109
    """Run `command` (built by `quoting`); a failure says which host and step, and why."""
    try:
        result = await conn.run(command, input=stdin, check=False, timeout=timeout)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostError(host, step, _first_line(exc)) from None
    if check and result.exit_status != 0:
        err = str(result.stderr or "").strip() or str(result.stdout or "").strip()
        lines = err.splitlines() or [f"exit status {result.exit_status}"]
        raise HostError(host, step, lines[-1])
    return result
