"""Starting a job's process so that it can outlive the agent, and finding it again."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Mapping

from hodei_agent.errors import JobStartError
from hodei_agent.statedir import process_start_ticks

# The wrapper a job runs under when the agent has a state dir. `(exec "$@")` runs the
# command itself (never a shell builtin of the same name) in one fork; the trap keeps the
# wrapper alive through a SIGTERM to the group, long enough to record how the command
# ended (children get the default disposition back). Its status is the command's,
# shell-style: 128+N when killed by signal N.
WRAPPER_SHELL = "/bin/sh"
WRAPPER = 's=$1; shift; trap : HUP INT TERM; (exec "$@"); c=$?; echo "$c" > "$s"; exit "$c"'
WRAPPER_NAME = "hodei-job"


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: a process killed by signal N reports 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def signal_name(signum: int) -> str | None:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return None


def check_executable(program: str, env: Mapping[str, str], cwd: str) -> None:
    """Fail the way exec would, before the wrapper runs: a missing or non-executable program
    must end the attempt as "failed to start", not as the shell's exit 127."""
    if "/" in program:
        path = os.path.join(cwd, program)
        if not os.path.exists(path):
            raise JobStartError(f"executable not found: {program}")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise JobStartError(f"permission denied: {program}")
        return
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise JobStartError(f"executable not found: {program}")


def open_pidfd(pid: int, start_ticks: int) -> int | None:
    """A pidfd on the process `pid` started at `start_ticks`; None if it is gone (or the pid
    now names another process)."""
    if process_start_ticks(pid) != start_ticks:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start_ticks(pid) != start_ticks:  # reused between the two looks
        os.close(pidfd)
        return None
    return pidfd


class ExitProtocol(asyncio.SubprocessProtocol):
    """Sets an event when the wrapper (the agent's child) exits."""

    def __init__(self) -> None:
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        self.exited.set()
