"""The lease watchdog: stops a dead agent's jobs before the server may run them elsewhere.

An agent keeps the jobs of the attempts it holds alive past its own death, so that a restarted
agent can re-attach to them. That must not outlast the lease: once the server declares the
worker lost, it retries the jobs elsewhere, and the old processes must be gone by then. A live
agent stops its jobs itself when it hears nothing from the server (`Agent._watch_lease`); for a
dead one, this small process (one per state dir, started by the agent, no gRPC, no protobuf)
reads the deadline the agent renews with every acknowledged heartbeat and, once it has
passed, kills every process of every job in the state dir — its cgroup, where it has one,
and its process group — and marks it fenced. It exits when the agent drained (the lease file
is gone) or after fencing, with nothing left to guard.

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
from typing import NamedTuple

from hodei_agent import cgroups
from hodei_agent.procgroup import start_ticks

LEASE_FILE = "lease"
JOBS_DIR = "jobs"
META_SUFFIX = ".meta"
STDOUT_SUFFIX = ".stdout"
FENCED_SUFFIX = ".fenced"
PID_FILE = "watchdog.pid"

POLL_SECONDS = 0.25
KILL_GRACE = 1.0
# How long to wait for the killed processes' cgroups to empty, to remove them.
_GONE_WAIT = 2.0


def running(state_dir: Path) -> bool:
    """True if a watchdog is already watching `state_dir`."""
    try:
        pid, ticks = (int(v) for v in (state_dir / PID_FILE).read_text().split())
    except (OSError, ValueError):
        return False
    return start_ticks(pid) == ticks


def job_process(prefix: str) -> tuple[int, int] | None:
    """(pid, start time) of the job whose output goes to `<prefix>.stdout`: the leader of a
    process group of its own with that file as its standard output; None if none runs.

    How a job is found whose agent died between starting it and recording its pid."""
    target = os.path.realpath(prefix + STDOUT_SUFFIX)
    with os.scandir("/proc") as entries:
        pids = [int(entry.name) for entry in entries if entry.name.isdigit()]
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/fd/1") != target or os.getpgid(pid) != pid:
                continue
        except OSError:
            continue
        ticks = start_ticks(pid)
        if ticks is not None:
            return pid, ticks
    return None


def _deadline(state_dir: Path) -> float | None:
    try:
        return float((state_dir / LEASE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return 0.0  # unreadable: the jobs have no lease


class _Job(NamedTuple):
    prefix: str  # of its files in the state dir
    pgid: int | None  # None: its main process has ended
    cgroup: str  # "" if it has none


def _jobs(state_dir: Path) -> list[_Job]:
    """Every job of the state dir with a process left: its main one, or any in its cgroup."""
    jobs = []
    with contextlib.suppress(FileNotFoundError):
        for meta_path in (state_dir / JOBS_DIR).glob("*" + META_SUFFIX):
            prefix = str(meta_path)[: -len(META_SUFFIX)]
            try:
                meta = json.loads(meta_path.read_bytes())
                pid, ticks = int(meta["pid"]), int(meta["start_ticks"])
                cgroup = str(meta.get("cgroup") or "")
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if pid == 0:  # recorded before it was started, its pid never
                found = job_process(prefix)
                if found is not None:
                    pid, ticks = found
            pgid = pid if pid and start_ticks(pid) == ticks else None
            if pgid is not None or (cgroup and cgroups.populated(cgroup)):
                jobs.append(_Job(prefix, pgid, cgroup))
    return jobs


def live_jobs(state_dir: Path) -> list[tuple[str, int]]:
    """(file prefix, process group) of every job whose main process still runs."""
    return [(job.prefix, job.pgid) for job in _jobs(state_dir) if job.pgid is not None]


def _signal(job: _Job, signum: signal.Signals) -> None:
    if job.cgroup:
        if signum == signal.SIGKILL:
            cgroups.kill(job.cgroup)
        else:
            cgroups.signal_all(job.cgroup, signum)
    if job.pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pgid, signum)


def fence(state_dir: Path) -> int:
    """Mark and kill every job of `state_dir` whose main process still runs, and kill what
    ended jobs left in their cgroups; returns how many jobs were still running."""
    jobs = _jobs(state_dir)
    running = [job for job in jobs if job.pgid is not None]
    for job in running:
        with contextlib.suppress(OSError):
            Path(job.prefix + FENCED_SUFFIX).touch(mode=0o600)
    for job in jobs:
        _signal(job, signal.SIGTERM)
    if jobs:
        time.sleep(KILL_GRACE)
    for job in jobs:
        _signal(job, signal.SIGKILL)
    # Their cgroups go once empty: their keeper may be gone, and no agent come back.
    deadline = time.monotonic() + _GONE_WAIT
    left = [job.cgroup for job in jobs if job.cgroup]
    while left and time.monotonic() < deadline:
        for cgroup in left:
            cgroups.kill(cgroup)
        time.sleep(0.02)
        left = [cgroup for cgroup in left if not cgroups.remove(cgroup)]
    for home in {os.path.dirname(os.path.dirname(job.cgroup)) for job in jobs if job.cgroup}:
        cgroups.prune(home)
    return len(running)


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
