"""`hodeictl host ...`: register, trust, check, bootstrap, list and remove SSH hosts.

These commands work on the host registry in PostgreSQL directly (like `hodei-server token
create`): only whoever can reach the server's database can let a machine join. The
database is --database-url, else $HODEI_DATABASE_URL, else the local embedded stack's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hodei_plugins.errors import PluginError
from hodei_ssh.registry import Host, HostRegistry, validate_name
from hodeictl import values
from hodeictl.options import OutputOpt
from hodeictl.output import OutputFormat

T = TypeVar("T")

app = typer.Typer(rich_markup_mode=None,
                  help="Bare-metal hosts reached over SSH: register, trust, check, "
                       "bootstrap into workers, remove.", no_args_is_help=True)

@app.callback()
def _require_extra() -> None:
    """Bare-metal hosts reached over SSH: register, trust, check, bootstrap into workers,
    remove."""
    try:
        import hodei_server.store.db  # noqa: F401
        import hodei_ssh.sshlib  # noqa: F401
    except ImportError as exc:
        raise _fail(f"hodeictl host needs the ssh extra ({exc.name} is missing): "
                    "pip install 'hodei[ssh]'") from None


DatabaseOpt = Annotated[str | None, typer.Option(
    "--database-url", envvar="HODEI_DATABASE_URL", metavar="URL",
    help="The server's PostgreSQL (default: the local embedded stack's).")]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The host's registered name.")]


def _errors() -> tuple[type[Exception], ...]:
    from hodei_server.errors import HodeiError

    return (PluginError, HodeiError)


def _fail(message: str, usage: bool = False) -> Exception:
    from hodeictl.errors import HodeiCtlError, UsageError

    return UsageError(message) if usage else HodeiCtlError(message)


def _database_url(explicit: str | None) -> str:
    if explicit is not None:
        _check_database_url(explicit)
        return explicit
    from hodeictl import embedded

    info = embedded.read_stack(embedded.home_dir())
    if info is not None and info.database_url:
        return info.database_url
    raise _fail("no database: give --database-url or HODEI_DATABASE_URL (the Hodei server's "
                "PostgreSQL), or start the local stack with `hodeictl up`", usage=True)


def _check_database_url(url: str) -> None:
    """Refuse a URL that names nothing: libpq would take it for "every default", some
    database of this user's that is not the server's."""
    import psycopg

    try:
        named = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return  # connecting says what is wrong with it
    if not named:
        raise _fail("--database-url (or HODEI_DATABASE_URL) names no database", usage=True)


def _run(database_url: str | None, work: Callable[[HostRegistry], Awaitable[T]]) -> T:
    from hodei_ssh.errors import RegistryError
    from hodei_ssh.registry import open_registry
    from hodeictl.errors import HodeiCtlError

    url = _database_url(database_url)

    async def main() -> T:
        async with open_registry(url, actor="operator") as registry:
            return await work(registry)

    try:
        return asyncio.run(main())
    except HodeiCtlError:
        raise
    except RegistryError as exc:
        raise _fail(str(exc), usage=True) from None
    except _errors() as exc:
        raise _fail(str(exc)) from None


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--label expects KEY=VALUE; got {item!r}", usage=True)
        labels[key] = value
    from hodei_server.errors import InvalidSpec
    from hodei_server.validation import validate_labels

    try:
        validate_labels(labels, "--label")
    except InvalidSpec as exc:
        raise _fail(str(exc), usage=True) from None
    return labels


def _check_name(name: str, what: str = "host name") -> str:
    from hodei_ssh.errors import RegistryError

    try:
        return validate_name(name, what)
    except RegistryError as exc:
        raise _fail(str(exc), usage=True) from None


@contextlib.asynccontextmanager
async def _connection(registry: HostRegistry, host: Host) -> AsyncIterator[Any]:
    from hodei_ssh import remote

    async def pin(pinned: Host, line: str, fingerprint: str) -> None:
        await registry.pin(pinned.name, line, fingerprint)

    async with remote.connect(host, registry.get, pin) as conn:
        yield conn


@app.command()
def add(
    name: NameArg,
    address: Annotated[str, typer.Option("--address", help="Address or DNS name.")],
    user: Annotated[str, typer.Option("--user", help="The SSH user.")],
    key: Annotated[str, typer.Option("--key", help="Private key file (default: "
                                     "ssh-agent and ~/.ssh/id_*).")] = "",
    port: Annotated[int, typer.Option("--port", metavar="PORT",
                                      parser=values.integer(1, 65535))] = 22,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="K=V", help="Label of the host's worker (repeatable).")] = None,
    jump: Annotated[str, typer.Option("--jump", metavar="HOST",
                                      help="A registered host to reach it through.")] = "",
    sudo: Annotated[bool, typer.Option("--sudo", help="Install a system systemd unit with "
                                       "sudo -n (else a --user unit).")] = False,
    fingerprint: Annotated[str, typer.Option(
        "--fingerprint", metavar="SHA256:...",
        help="Pin this host-key fingerprint now.")] = "",
    trust_on_first_use: Annotated[bool, typer.Option(
        "--trust-on-first-use",
        help="Pin whatever key the host presents at the first connection.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Register a host. Its key is checked against known_hosts unless pinned."""
    _check_name(name)
    if jump:
        _check_name(jump, "--jump host")
    try:
        values.host(address)
    except ValueError as exc:
        raise _fail(f"--address: {exc}", usage=True) from None
    if not user or any(c.isspace() or c in ":@" for c in user) or user.startswith("-"):
        raise _fail(f"--user must be a user name; got {user!r}", usage=True)
    if fingerprint and trust_on_first_use:
        raise _fail("--fingerprint and --trust-on-first-use exclude each other", usage=True)
    if fingerprint and not fingerprint.startswith("SHA256:"):
        raise _fail("--fingerprint expects SHA256:... (as `ssh-keygen -lf` prints it)",
                    usage=True)
    key_path = _key_file(key) if key else ""
    mode = "pinned" if fingerprint else "tofu" if trust_on_first_use else "known_hosts"
    host = Host(name=name, address=address, username=user, port=port,
                key_path=key_path,
                labels=_labels(label or []), jump=jump, sudo=sudo, host_key_mode=mode,
                fingerprint=fingerprint)
    added = _run(database_url, lambda registry: registry.add(host))
    _say(f"host {added.name} registered ({added.username}@{added.address}:{added.port}"
               f", host key: {_key_text(added)})", err=True)


def _say(text: str, err: bool = False) -> None:
    """One line for the terminal: what a host sent (its errors, its facts) may hold
    control characters, which are shown, not obeyed."""
    from hodeictl.usage import one_line

    typer.echo(one_line(text), err=err)


def _key_file(key: str) -> str:
    """The absolute path of a private key file given to --key."""
    try:
        path = Path(key).expanduser().resolve()
        if path.is_file():
            return str(path)
    except (OSError, ValueError, RuntimeError):
        pass
    raise _fail(f"--key: no such file {key!r}", usage=True)


def _key_text(host: Host) -> str:
    if host.fingerprint:
        return f"pinned {host.fingerprint}"
    if host.host_key_mode == "tofu":
        return "trust on first use"
    return "known_hosts"


@app.command()
def trust(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Pin without asking.")] = False,
    fingerprint: Annotated[str, typer.Option(
        "--fingerprint", metavar="SHA256:...",
        help="Pin only if the host presents this fingerprint.")] = "",
    database_url: DatabaseOpt = None,
) -> None:
    """Show the key the host presents and pin it when confirmed."""
    from hodei_ssh import remote

    _check_name(name)

    async def work(registry: HostRegistry) -> None:
        host = await registry.get(name)
        key = await remote.presented_key(host, registry.get)
        seen = remote.fingerprint(key)
        _say(f"host {name} ({host.address}:{host.port}) presents {seen}", err=True)
        if host.fingerprint and host.fingerprint != seen:
            _say(f"WARNING: the pinned key was {host.fingerprint}", err=True)
        if fingerprint and fingerprint != seen:
            raise _fail(f"host {name} presents {seen}, not {fingerprint}; nothing pinned")
        if not (yes or fingerprint):
            if not sys.stdin.isatty():
                raise _fail("confirm with --yes or --fingerprint (no terminal to ask on)",
                            usage=True)
            if not typer.confirm("Pin this key?", default=False, err=True):
                raise _fail("nothing pinned")
        await registry.pin(name, remote.openssh_line(key), seen)
        _say(f"host {name}: pinned {seen}", err=True)

    _run(database_url, work)


@app.command()
def check(name: NameArg, database_url: DatabaseOpt = None) -> None:
    """Preflight only: OS, arch, Python >= 3.11, free disk, systemd, sudo -n."""
    from hodei_ssh import bootstrap

    _check_name(name)

    async def work(registry: HostRegistry) -> None:
        host = await registry.get(name)
        async with _connection(registry, host) as conn:
            facts = await bootstrap.preflight(conn, host)
        await registry.set_state(name, host.state, host.last_error, contacted=True)
        _say(f"{name}: {facts.summary()}")
        bootstrap.require_usable(host, facts)

    _run(database_url, work)


@app.command("bootstrap")
def bootstrap_hosts(
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME...")] = None,
    all_hosts: Annotated[bool, typer.Option("--all", help="Every registered host.")] = False,
    agent_server: Annotated[str, typer.Option(
        "--agent-server", envvar="HODEI_AGENT_SERVER", metavar="HOST:PORT",
        help="The server address the hosts' agents dial.")] = "",
    parallel: Annotated[int, typer.Option("--parallel", metavar="N",
                                          parser=values.integer(1, 64))] = 8,
    slots: Annotated[int, typer.Option("--slots", metavar="N",
                                       parser=values.integer(1, 1024))] = 4,
    ca_cert: Annotated[Path | None, typer.Option(
        "--ca-cert", help="The CA certificate the agents verify the server with (TLS).")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Let the agents speak plaintext to the server.")] = False,
    service: Annotated[str, typer.Option(
        "--service", help="auto, systemd-system, systemd-user or process.")] = "auto",
    database_url: DatabaseOpt = None,
) -> None:
    """Install the agent on hosts and start it; a re-run on a healthy host changes nothing."""
    from hodei_ssh import bootstrap

    if bool(names) == all_hosts:
        raise _fail("name hosts, or give --all", usage=True)
    for name in names or []:
        _check_name(name)
    if not agent_server:
        raise _fail("--agent-server HOST:PORT is needed: the address the agents dial",
                    usage=True)
    try:
        values.server_address(agent_server)
    except ValueError as exc:
        raise _fail(f"--agent-server: {exc}", usage=True) from None
    if not (ca_cert or insecure):
        raise _fail("give --ca-cert (TLS) or --insecure (plaintext)", usage=True)
    if service not in ("auto", "systemd-system", "systemd-user", "process"):
        raise _fail("--service must be auto, systemd-system, systemd-user or process",
                    usage=True)
    ca_data = b""
    if ca_cert is not None:
        try:
            ca_data = ca_cert.read_bytes()
        except (OSError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise _fail(f"--ca-cert: cannot read {str(ca_cert)!r}: {why}",
                        usage=True) from None

    def progress(host: str, step: str) -> None:
        _say(f"{host}: {step}", err=True)

    async def one(registry: HostRegistry, host: Host) -> str | None:
        settings = bootstrap.AgentSettings(
            server=agent_server, worker_name=host.worker_name or host.name,
            labels=host.labels, slots=slots, insecure=insecure and not ca_cert,
            ca_cert=str(ca_cert or ""), service=service)
        try:
            await registry.set_state(host.name, "bootstrapping")
            async with _connection(registry, host) as conn:
                marker, kind, changed = await bootstrap.bootstrap(
                    conn, host, settings, token=lambda: registry.create_token(host.labels),
                    progress=progress, ca_cert_data=ca_data)
        except PluginError as exc:
            await registry.set_state(host.name, "failed", str(exc))
            return str(exc)
        await registry.bootstrapped(host.name, kind, marker, settings.worker_name)
        _say(f"{host.name}: {'ready' if changed else 'unchanged'} (agent {marker}, "
                   f"{kind})")
        return None

    async def work(registry: HostRegistry) -> list[str]:
        hosts = await registry.list() if all_hosts else [
            await registry.get(name) for name in dict.fromkeys(names or [])]
        bound = asyncio.Semaphore(parallel)

        async def bounded(host: Host) -> str | None:
            async with bound:
                return await one(registry, host)

        results = await asyncio.gather(*(bounded(host) for host in hosts))
        return [error for error in results if error]

    failures = _run(database_url, work)
    if failures:
        for failure in failures:
            _say(f"hodeictl: {failure}", err=True)
        raise typer.Exit(1)


def _age(when: dt.datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (dt.datetime.now(dt.UTC) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


@app.command("list")
def list_hosts(
    output_format: OutputOpt = OutputFormat.table,
    database_url: DatabaseOpt = None,
) -> None:
    """Registered hosts: state, agent version, worker, last contact, host key."""
    from hodeictl import output

    hosts = _run(database_url, lambda registry: registry.list())
    if output.print_data(output_format, [{
            "name": h.name, "address": h.address, "port": h.port, "user": h.username,
            "labels": h.labels, "jump": h.jump, "state": h.state, "service": h.service,
            "agent_version": h.agent_version, "worker": h.worker_name,
            "worker_state": h.worker_state, "host_key_mode": h.host_key_mode,
            "fingerprint": h.fingerprint, "last_error": h.last_error,
            "last_contact": h.last_contact.isoformat() if h.last_contact else None,
    } for h in hosts]):
        return
    output.print_pairs_table(
        ("NAME", "ADDRESS", "STATE", "AGENT", "WORKER", "LAST CONTACT", "HOST KEY"),
        [(h.name, f"{h.username}@{h.address}:{h.port}" + (f" via {h.jump}" if h.jump else ""),
          h.state + (f": {h.last_error}" if h.last_error else ""), h.agent_version or "-",
          (f"{h.worker_name} ({h.worker_state.lower()})" if h.worker_state
           else h.worker_name or "-"),
          _age(h.last_contact), _key_text(h)) for h in hosts], output_format, kind="host")


@app.command()
def remove(
    name: NameArg,
    force: Annotated[bool, typer.Option(
        "--force", help="Forget the host even if it cannot be reached to clean it.")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Drain and stop the agent, delete what bootstrap installed, revoke the worker."""
    from hodei_ssh import bootstrap

    _check_name(name)

    async def work(registry: HostRegistry) -> None:
        host = await registry.get(name)
        try:
            async with _connection(registry, host) as conn:
                await bootstrap.remove(conn, host)
        except PluginError as exc:
            if not force:
                raise
            _say(f"hodeictl: {exc} (forgetting it anyway: --force)", err=True)
        revoked = await registry.delete(host)
        _say(f"host {name} removed" + (f"; worker {host.worker_name} revoked"
                                              if revoked else ""), err=True)

    _run(database_url, work)
