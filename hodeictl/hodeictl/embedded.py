"""Finding, starting and stopping the embedded local stack (`python -m hodei_server.embedded`).

The stack writes `HOME/stack.json` when it is ready and removes it on exit; `HOME/stack.lock`
keeps two hodeictl processes from starting two stacks. The home and every file of it are
the user's alone (0700, 0600).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hodeictl.config import Config
from hodeictl.errors import StackError, UsageError
from hodeictl.output import display_path, note, progress

if TYPE_CHECKING:
    import subprocess

STACK_MODULE = "hodei_server.embedded"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOCK_TIMEOUT = READY_TIMEOUT + 30.0
LEFTOVERS_TIMEOUT = 120.0
_POLL_INTERVAL = 0.1


def home_dir() -> Path:
    """`$HODEI_HOME`, else `$XDG_DATA_HOME/hodei`, else `~/.local/share/hodei`."""
    if explicit := os.environ.get("HODEI_HOME"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hodei"


def database_url() -> str | None:
    """An external PostgreSQL for the stack: `$HODEI_DATABASE_URL`, else `[embedded]` config."""
    return os.environ.get("HODEI_DATABASE_URL") or Config.load().embedded_database_url


@dataclass(frozen=True)
class StackInfo:
    """The contents of `stack.json`."""

    pid: int
    address: str
    database_url: str
    started_at: float
    # The admin API token the stack made for its user (stack.json is readable by them only).
    token: str = ""


def _is_stack_process(pid: int) -> bool:
    """Whether `pid` is alive and, where /proc tells, still the stack (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return STACK_MODULE.encode() in cmdline


def read_stack(home: Path) -> StackInfo | None:
    """The running stack described by `HOME/stack.json`, or None."""
    try:
        raw = json.loads((home / "stack.json").read_text(encoding="utf-8"))
        info = StackInfo(
            pid=int(raw["pid"]),
            address=str(raw["address"]),
            database_url=str(raw.get("database_url", "")),
            started_at=float(raw.get("started_at", 0.0)),
            token=str(raw.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing, or caught half-written: either way not a ready stack.
        return None
    return info if _is_stack_process(info.pid) else None


def stack_answers(info: StackInfo) -> bool:
    """Whether the stack's server answers."""
    import asyncio

    from hodeictl.client import server_answers

    return asyncio.run(server_answers(info.address))


def _open_private(path: Path) -> int:
    """`path` opened for appending, created 0600 (made so if it was not)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


@contextlib.contextmanager
def stack_lock(home: Path) -> Iterator[None]:
    """Hold `HOME/stack.lock`; waits for another hodeictl that is starting or stopping it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(_open_private(home / "stack.lock"), "a+b") as lock_file:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"another hodeictl holds {display_path(home / 'stack.lock')}; "
                        "try again when it is done"
                    ) from None
                time.sleep(_POLL_INTERVAL)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_running(home: Path, database_url: str | None, *, probe: bool = True) -> StackInfo:
    """The running local stack, started (detached) if there is none.

    With `probe`, a stack that is running but does not answer raises StackError; without,
    the caller calls `not_answering` when its own call finds it unreachable (one round trip
    fewer for every command).
    """
    if (info := read_stack(home)) is None:
        with stack_lock(home):
            info = read_stack(home)
            if info is None:
                return start_detached(home, database_url)
    if probe and not stack_answers(info):
        raise not_answering(home, info)
    return info


def not_answering(home: Path, info: StackInfo) -> StackError:
    """The error for a running stack whose server does not answer."""
    return StackError(
        f"the local Hodei stack (pid {info.pid}) at {info.address} does not answer; "
        f"see {display_path(home / 'stack.log')} or restart it: "
        "hodeictl down && hodeictl up --detach"
    )


def _command(home: Path) -> list[str]:
    if importlib.util.find_spec("hodei_server") is None:
        raise UsageError(
            "the local Hodei stack needs the server installed: pip install 'hodei[server]' "
            "(or point hodeictl at a server with --server or --context)"
        )
    return [sys.executable, "-m", STACK_MODULE, "--home", str(home)]


def _environment(database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if database_url:
        env["HODEI_DATABASE_URL"] = database_url
    return env


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 8192))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _stop_child(process: subprocess.Popen[bytes]) -> int:
    import subprocess

    process.terminate()
    try:
        return process.wait(STOP_TIMEOUT)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()
        return process.wait()


def _wait_ready(process: subprocess.Popen[bytes], home: Path, output: str) -> StackInfo:
    """Wait for stack.json; `output` says where the stack's output went, for errors."""
    deadline = time.monotonic() + READY_TIMEOUT
    with progress("Starting the local Hodei stack…"):
        while time.monotonic() < deadline:
            info = read_stack(home)
            if info is not None:
                return info
            if process.poll() is not None:
                raise StackError(
                    f"the local Hodei stack exited with code {process.returncode} "
                    f"before it was ready; {output}"
                )
            time.sleep(_POLL_INTERVAL)
    _stop_child(process)
    raise StackError(
        f"the local Hodei stack did not get ready within {READY_TIMEOUT:g} s; {output}"
    )


def start_detached(home: Path, database_url: str | None) -> StackInfo:
    """Start the stack in its own session, output appended to `HOME/stack.log`.

    The caller holds `stack_lock(home)`.
    """
    import subprocess

    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = home / "stack.log"
    with os.fdopen(_open_private(log_path), "ab") as log_file:
        process = subprocess.Popen(
            _command(home),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_environment(database_url),
            start_new_session=True,
        )
    try:
        info = _wait_ready(process, home, f"see {display_path(log_path)}")
    except StackError as error:
        last = _last_line(log_path)
        raise StackError(f"{error}: {last}" if last else str(error)) from None
    note(
        f"Started a local Hodei stack at {info.address} (logs: {display_path(log_path)}); "
        "stop it with 'hodeictl down'."
    )
    return info


def run_foreground(home: Path, database_url: str | None) -> int:
    """Run the stack with its output on this terminal until it exits or Ctrl-C stops it."""
    import subprocess

    with stack_lock(home):
        info = read_stack(home)
        if info is not None:
            note(f"A local Hodei stack is already running at {info.address} (pid {info.pid}).")
            return 0
        process = subprocess.Popen(
            _command(home),
            stdin=subprocess.DEVNULL,
            env=_environment(database_url),
            # Its own session: Ctrl-C reaches hodeictl only, which stops the stack with
            # SIGTERM, the signal it documents for an orderly shutdown.
            start_new_session=True,
        )
        try:
            info = _wait_ready(process, home, "its output is above")
        except KeyboardInterrupt:
            return _stop_child(process)
    note(f"The local Hodei stack is ready at {info.address}; press Ctrl-C to stop it.")
    try:
        code = process.wait()
    except KeyboardInterrupt:
        note("Stopping the local Hodei stack…")
        return _stop_child(process)
    if code:
        note(f"The local Hodei stack exited with code {code}.")
    return code


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_stack_process(pid):
            return True
        time.sleep(_POLL_INTERVAL)
    return not _is_stack_process(pid)


def stop(home: Path) -> str:
    """Stop the running stack (SIGTERM, then SIGKILL after STOP_TIMEOUT), then whatever a
    stack left running (a killed one: its agents, their jobs, its PostgreSQL); says what was
    done."""
    with stack_lock(home):
        info = read_stack(home)
        said = "No local Hodei stack is running." if info is None else _stop_stack(home, info)
        left = _stop_leftovers(home)
    if not left:
        return said
    if info is None:
        return f"No local Hodei stack was running; stopped what one left running: {left}."
    return f"{said} Stopped what it left running: {left}."


def _stop_stack(home: Path, info: StackInfo) -> str:
    stopped = f"Stopped the local Hodei stack (pid {info.pid})."
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        return stopped
    with progress("Stopping the local Hodei stack…"):
        if _wait_exit(info.pid, STOP_TIMEOUT):
            return stopped
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGKILL)
    _wait_exit(info.pid, 5.0)
    (home / "stack.json").unlink(missing_ok=True)
    return (
        f"The local Hodei stack (pid {info.pid}) did not stop within {STOP_TIMEOUT:g} s; "
        "killed it."
    )


def _stop_leftovers(home: Path) -> str:
    """Have the stack's module stop what a stack left running in `home`; what it stopped."""
    import subprocess

    if importlib.util.find_spec("hodei_server") is None:
        return ""  # no server installed: no stack ever ran here
    try:
        done = subprocess.run([*_command(home), "--stop"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=LEFTOVERS_TIMEOUT,
                              env=_environment(None))
    except subprocess.TimeoutExpired:
        raise StackError(f"stopping what the local Hodei stack left running took more than "
                         f"{LEFTOVERS_TIMEOUT:g} s") from None
    if done.returncode:
        last = done.stderr.decode(errors="replace").strip().splitlines()
        raise StackError("could not stop what the local Hodei stack left running: "
                         f"{last[-1] if last else f'exit code {done.returncode}'}")
    return done.stdout.decode(errors="replace").strip()
