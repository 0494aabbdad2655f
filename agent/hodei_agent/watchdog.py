"""The lease watchdog: stops a dead agent's jobs before the server may run them elsewhere.

An agent keeps the jobs of the attempts it holds alive past its own death, so that a restarted
agent can re-attach to them. That must not outlast the lease: once the server declares the
worker lost, it retries the jobs elsewhere, and the old processes must be gone by then. A live
agent stops its jobs itself when it hears nothing from the server (`Agent._watch_lease`); for a
dead one, this small process (one per state dir, started by the agent, no gRPC, no protobuf)
reads the deadline the agent renews with every acknowledged heartbeat and, once it has
passed, kills the process group of every job in the state dir and marks it fenced. It exits
when the agent drained (the lease file is gone) or after fencing, with nothing left to guard.

`python -m hodei_agent.watchdog STATE_DIR [--remove]`
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from hodei_agent.procgroup import start_ticks

LEASE_FILE = "lease"
JOBS_DIR = "jobs"
META_SUFFIX = ".meta"
FENCED_SUFFIX = ".fenced"
PID_FILE = "watchdog.pid"

POLL_SECONDS = 0.25
KILL_GRACE = 1.0


def running(state_dir: Path) -> bool:
    """True if a watchdog is already watching `state_dir`."""
    try:
        pid, ticks = (int(v) for v in (state_dir / PID_FILE).read_text().split())
    except (OSError, ValueError):
        return False
    return start_ticks(pid) == ticks


def _deadline(state_dir: Path) -> float | None:
    try:
        return float((state_dir / LEASE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return 0.0  # unreadable: the jobs have no lease


def _live_jobs(state_dir: Path) -> list[tuple[str, int]]:
    """(file prefix, process group) of every job whose process still runs."""
    live = []
    with contextlib.suppress(FileNotFoundError):
        for meta_path in (state_dir / JOBS_DIR).glob("*" + META_SUFFIX):
            try:
                meta = json.loads(meta_path.read_bytes())
                pid, ticks = int(meta["pid"]), int(meta["start_ticks"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if start_ticks(pid) == ticks:
                live.append((str(meta_path)[: -len(META_SUFFIX)], pid))
    return live


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def fence(state_dir: Path) -> int:
    """Mark and kill every live job of `state_dir`; returns how many there were."""
    live = _live_jobs(state_dir)
    for prefix, pgid in live:
        with contextlib.suppress(OSError):
            Path(prefix + FENCED_SUFFIX).touch(mode=0o600)
        _signal_group(pgid, signal.SIGTERM)
    if live:
        time.sleep(KILL_GRACE)
        for _, pgid in live:
            _signal_group(pgid, signal.SIGKILL)
    return len(live)


def watch(state_dir: Path, *, remove: bool = False) -> int:
    """Watch until the agent drained, or its lease ran out and its jobs were stopped; then
    remove `state_dir` if `remove` (a temporary one, which no agent can come back to)."""
    fd = os.open(state_dir / PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as pid_file:
        pid_file.write(f"{os.getpid()} {start_ticks(os.getpid())}\n")
    while True:
        deadline = _deadline(state_dir)
        if deadline is None:
            return 0
        if time.time() > deadline:
            fenced = fence(state_dir)
            if fenced:
                sys.stderr.write(f"hodei-agent watchdog: lease expired; stopped {fenced} job(s)\n")
            # A restarted agent renews the lease and starts a watchdog of its own if needed.
            deadline = _deadline(state_dir)
            if deadline is None or time.time() > deadline:
                if remove and deadline is not None:
                    shutil.rmtree(state_dir, ignore_errors=True)
                return 0
        time.sleep(POLL_SECONDS)


def main() -> None:
    args = sys.argv[1:]
    remove = "--remove" in args
    paths = [a for a in args if a != "--remove"]
    if len(paths) != 1:
        sys.stderr.write("usage: python -m hodei_agent.watchdog STATE_DIR [--remove]\n")
        sys.exit(2)
    sys.exit(watch(Path(paths[0]), remove=remove))


if __name__ == "__main__":
    main()
