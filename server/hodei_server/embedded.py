"""The embedded local stack: private PostgreSQL + server + `local` provider.

`python -m hodei_server.embedded --home DIR` is what `hodeictl` starts when no server is
configured. When the server is ready it writes DIR/stack.json; it removes the file on exit.
Everything it runs is found from DIR (0700, its user's alone):

```
DIR/stack.json   the running stack: pid, address, database, the admin token (0600)
DIR/listen       the address it listens on, taken again by the next start (0600)
DIR/agents/      the state dir of each of its agents, with the provider's record of it
DIR/postgres/    the private PostgreSQL (unless HODEI_DATABASE_URL names another); run as
                 root, DIR-postgres/ beside it (see `postgres_dir`)
```

A stack started after one that was killed listens where that one did, so its agents come
back to it; it takes them over (restarting those that dial another address, when the port
is taken) and reuses the PostgreSQL still running. `--stop` stops whatever a previous run
left running (`hodeictl down` calls it once the stack itself is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from hodei_plugins.local import LocalProviderConfig
from hodei_plugins.local.leftovers import stop_leftovers as stop_leftover_agents
from hodei_server.app import serve, setup_logging
from hodei_server.config import ServerConfig
from hodei_server.errors import Conflict, DatabaseUnavailable, HodeiError
from hodei_server.security import apitokens, audit
from hodei_server.security.apitokens import Role
from hodei_server.security.secretkeys import ensure_key_file
from hodei_server.store.sqlfiles import query

log = logging.getLogger(__name__)


class StackRunning(Conflict):
    """The stack runs: what it runs is not left over."""

STACK_MODULE = "hodei_server.embedded"
STACK_FILE = "stack.json"
LISTEN_FILE = "listen"
AGENTS_DIR = "agents"
POSTGRES_DIR = "postgres"
NEW_PORT = "127.0.0.1:0"
POSTGRES_STOP_TIMEOUT = 30.0
# The admin token the stack makes for its user at each start (the previous one is revoked).
LOCAL_ADMIN = "local-admin"
STACK_ACTOR = "embedded-stack"


def postgres_dir(home: Path) -> Path:
    """Where the private PostgreSQL keeps its data: HOME/postgres, or, run as root, beside
    the home (HOME-postgres).

    As root, pgserver runs PostgreSQL as a user of its own, which reaches its data dir by
    its full path for as long as it runs (pg_control at each checkpoint): every directory
    above the data dir must let it through, which the home (root's alone) does not.
    """
    if os.geteuid() == 0:
        return home.with_name(f"{home.name}-{POSTGRES_DIR}")
    return home / POSTGRES_DIR


def start_private_postgres(home: Path) -> str:
    """Start (or reuse, after a crash) the private PostgreSQL; its URL.

    It is this stack's to stop (`stop_private_postgres`), whatever pgserver's bookkeeping
    of the processes using it says: a killed stack never removes itself from it.
    """
    import pgserver  # only the embedded stack needs it

    data = postgres_dir(home)
    try:
        handle = pgserver.get_server(data, cleanup_mode=None)
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not start the private PostgreSQL in {data}: {exc}"
        ) from exc
    admin_url = handle.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(query("database_exists"), {"name": "hodei"}).fetchone()
        if not exists:
            conn.execute(query("create_embedded_database"))
    return str(handle.get_uri("hodei"))


def move_postgres_out_of_home(home: Path) -> None:
    """Move the data a stack run as root kept in HOME/postgres (before it was kept beside
    the home) out of it, stopping the PostgreSQL that runs on it first."""
    old, data = home / POSTGRES_DIR, postgres_dir(home)
    if data == old or not old.is_dir() or data.exists():
        return
    _stop_postgres_on(old)
    old.rename(data)
    log.info("moved the private PostgreSQL's data from %s to %s", old, data)


def _postmaster(data: Path) -> int | None:
    """The pid of the PostgreSQL running on `data`, from its postmaster.pid; None if none."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if not argv[0].endswith(b"postgres") or str(data).encode() not in argv:
        return None  # the pid of a PostgreSQL that is gone, now another process's
    return pid


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_private_postgres(home: Path) -> bool:
    """Stop the private PostgreSQL, whoever started it (fast shutdown; immediate, then
    SIGKILL, if it takes too long); True if one was running."""
    return _stop_postgres_on(postgres_dir(home))


def _stop_postgres_on(data: Path) -> bool:
    # pgserver's list of the processes using the server: stale after a crash.
    (data / ".handle_pids.json").unlink(missing_ok=True)
    pid = _postmaster(data)
    if pid is None:
        return False
    for signum, wait in ((signal.SIGINT, POSTGRES_STOP_TIMEOUT), (signal.SIGQUIT, 5.0),
                         (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return True
        log.warning("PostgreSQL (pid %d) did not stop after %s", pid, signum.name)
    return True


def stack_listen(home: Path) -> str:
    """Where to listen: where the stack listened before (HOME/listen), so that the agents
    it left find it, unless another process took that port; else a new port."""
    try:
        previous = (home / LISTEN_FILE).read_text().strip()
    except FileNotFoundError:
        return NEW_PORT
    host, _, port = previous.rpartition(":")
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except (OSError, ValueError):
        log.warning("%s, where the stack listened before, is taken; listening on a new port "
                    "(its agents are restarted with it)", previous)
        return NEW_PORT
    return previous


def write_private(path: Path, text: str) -> None:
    """Write `path` (0600) atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    tmp.replace(path)


def write_stack_file(home: Path, address: str, database_url: str, token: str) -> None:
    """stack.json, readable by the user only: it holds the admin token hodeictl sends."""
    write_private(home / STACK_FILE, json.dumps({
        "pid": os.getpid(),
        "address": address,
        "database_url": database_url,
        "started_at": time.time(),
        "token": token,
    }))


async def rotate_local_admin(database_url: str) -> str:
    """A new admin token for the stack's user; the one of the previous start is revoked."""
    token, token_id, secret_hash = apitokens.new_token()
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        async with conn.transaction():
            await conn.execute(query("revoke_api_token"), {"name": LOCAL_ADMIN})
            await apitokens.create_in(conn, token_id, secret_hash, LOCAL_ADMIN, Role.ADMIN, 0.0,
                                      STACK_ACTOR)
            await audit.record(conn, STACK_ACTOR, "embedded stack start", target=LOCAL_ADMIN,
                               allowed=True, detail={"role": "admin", "token_id": token_id})
    return token


def remove_stack_file(home: Path) -> None:
    path = home / STACK_FILE
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


SECRET_KEY_FILE = "secret.key"


def embedded_config(database_url: str, listen: str, home: Path | None = None) -> ServerConfig:
    """The stack's server config; with `home`, its secret store's key is HOME/secret.key
    (created, mode 0600, on first use)."""
    key_file = ""
    if home is not None:
        key_file = str(home / SECRET_KEY_FILE)
        ensure_key_file(Path(key_file))
    local = LocalProviderConfig(name="local", min_workers=1, max_workers=2, slots=4,
                                idle_timeout=600.0)
    if home is not None:
        # Its agents keep their state in the home, where the next start of the stack (after
        # a crash) takes them over and `--stop` finds them.
        local = dataclasses.replace(local, state_root=str(home / AGENTS_DIR), adopt=True)
    return ServerConfig(
        listen=listen,
        database_url=database_url,
        secret_key_file=key_file,
        providers=[local],
    )


async def _run(home: Path, database_url: str, listen: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async def ready(address: str) -> None:
        # Made once the server has migrated the database; before stack.json, which says "ready".
        token = await rotate_local_admin(database_url)
        write_private(home / LISTEN_FILE, address)
        write_stack_file(home, address, database_url, token)
        log.info("embedded stack ready at %s (home %s)", address, home)

    try:
        await serve(embedded_config(database_url, listen, home), stop, on_ready=ready)
    finally:
        remove_stack_file(home)


def stop_leftovers(home: Path) -> str:
    """Stop what a previous run of the stack in HOME left running; says what, "" if nothing."""
    info = _running_stack(home)
    if info is not None:
        raise StackRunning(f"the stack in {home} runs (pid {info}); stop it first")
    stopped = stop_leftover_agents(home / AGENTS_DIR)
    parts = [f"{count} {what}{'' if count == 1 else 's'}" for count, what in (
        (stopped.agents, "agent"), (stopped.jobs, "job"),
        (stopped.watchdogs, "lease watchdog"))
        if count]
    if stop_private_postgres(home):
        parts.append("PostgreSQL")
    if not parts:
        return ""
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _running_stack(home: Path) -> int | None:
    """The pid of a stack process running on HOME (per stack.json), if any."""
    try:
        pid = int(json.loads((home / STACK_FILE).read_text())["pid"])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if STACK_MODULE.encode() in argv else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hodei-embedded",
                                     description="Run the embedded local Hodei stack.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--listen", help="HOST:PORT (default: where it listened before, else "
                        "a new port on 127.0.0.1)")
    parser.add_argument("--stop", action="store_true",
                        help="stop what a previous run left running (agents, their jobs, "
                        "PostgreSQL), print what, and exit")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    home: Path = args.home.expanduser().resolve()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    move_postgres_out_of_home(home)  # while PostgreSQL may still pass through the home
    # Its token, its agents and its database are its user's alone.
    home.chmod(0o700)
    if args.stop:
        try:
            print(stop_leftovers(home))
        except StackRunning as exc:
            print(f"hodei: {exc.message}", file=sys.stderr)
            return 1
        return 0
    private = False
    try:
        database_url = os.environ.get("HODEI_DATABASE_URL", "")
        if not database_url:
            private = True
            database_url = start_private_postgres(home)
        asyncio.run(_run(home, database_url, args.listen or stack_listen(home)))
    except HodeiError as exc:
        if args.debug:
            raise
        print(f"hodei: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if private:
            stop_private_postgres(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
