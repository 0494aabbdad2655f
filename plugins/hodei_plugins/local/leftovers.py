"""Stopping what a `local` provider's agents left running once no server looks after them.

For a server (the embedded stack) that is gone for good, or about to be: every agent with a
record in the state root, the jobs of every state dir, their keepers and lease watchdogs.
A job stopped here is marked fenced, as its lease watchdog would have: an agent restarted on
its state dir later reports the attempt LOST (and the server retries it if it may).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from hodei_agent import watchdog
from hodei_plugins.local.agentproc import AgentProcess, read_record, start_ticks

_GONE_TIMEOUT = 5.0
_POLL_SECONDS = 0.05


@dataclass
class Stopped:
    """How many of each were still running, and stopped."""

    agents: int = 0
    jobs: int = 0
    watchdogs: int = 0


def _keeper_of(pid: int) -> int | None:
    """The keeper that started the job `pid` (its parent), if it still runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        with open(f"/proc/{parent}/cmdline", "rb") as cmdline:
            is_keeper = b"hodei_agent.keeper" in cmdline.read().split(b"\0")
    except (OSError, IndexError, ValueError):
        return None
    return parent if is_keeper else None


def _kill(pid: int, ticks: int | None) -> bool:
    """SIGKILL the process `pid` if it is still the one started at `ticks`."""
    if ticks is None or start_ticks(pid) != ticks:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _wait_gone(processes: dict[int, int | None]) -> None:
    """Wait a moment for the processes (pid: start time) to be gone."""
    deadline = time.monotonic() + _GONE_TIMEOUT
    while time.monotonic() < deadline:
        if all(ticks is None or start_ticks(pid) != ticks for pid, ticks in processes.items()):
            return
        time.sleep(_POLL_SECONDS)


def _watchdog_of(state_dir: Path) -> tuple[int, int] | None:
    try:
        pid, ticks = (int(v) for v in (state_dir / watchdog.PID_FILE).read_text().split())
    except (OSError, ValueError):
        return None
    return pid, ticks


def stop_leftovers(state_root: Path) -> Stopped:
    """Stop every agent recorded under `state_root`, then everything of their state dirs:
    jobs (SIGTERM, SIGKILL a second later), keepers, lease watchdogs."""
    stopped = Stopped()
    if not state_root.is_dir():
        return stopped
    state_dirs = sorted(path for path in state_root.iterdir() if path.is_dir())
    gone: dict[int, int | None] = {}
    for state_dir in state_dirs:
        record = read_record(state_dir)
        agent = AgentProcess.adopt(record) if record is not None else None
        if agent is not None and _kill(agent.pid, agent.ticks):
            gone[agent.pid] = agent.ticks
            stopped.agents += 1
    _wait_gone(gone)  # no agent starts a job (or renews a lease) from here on
    for state_dir in state_dirs:
        for _, pid in watchdog.live_jobs(state_dir):
            gone[pid] = start_ticks(pid)
            # Its keeper (its parent) exits once its jobs ended, its agent being gone.
            if (keeper := _keeper_of(pid)) is not None:
                gone[keeper] = start_ticks(keeper)
        stopped.jobs += watchdog.fence(state_dir)
        found = _watchdog_of(state_dir)
        if found is not None and _kill(*found):
            gone[found[0]] = found[1]
            stopped.watchdogs += 1
    _wait_gone(gone)
    return stopped
