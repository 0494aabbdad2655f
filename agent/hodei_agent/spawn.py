"""Starting a job's process, and finding it again after the agent restarted."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
from collections.abc import Mapping

from hodei_agent.errors import JobStartError
from hodei_agent.keeper import exit_code_of
from hodei_agent.keeperclient import KeeperClient, KeeperError, Kept
from hodei_agent.launch import Launch
from hodei_agent.statedir import process_start_ticks

__all__ = ["Spawned", "check_executable", "exit_code_of", "open_pidfd", "signal_name",
           "spawn_kept"]


def signal_name(signum: int) -> str | None:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return None


def check_executable(program: str, env: Mapping[str, str], cwd: str) -> str:
    """The file exec would run for `program`; fails the way exec would, before anything is
    spawned: a missing or non-executable program ends the attempt as "failed to start",
    with a message that says which."""
    if "/" in program:
        path = os.path.join(cwd, program)
        if not os.path.exists(path):
            raise JobStartError(f"executable not found: {program}")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise JobStartError(f"permission denied: {program}")
        return path
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise JobStartError(f"executable not found: {program}")
    return found


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


class Spawned:
    """A job its keeper started: it outlives the agent, and the keeper records its end."""

    def __init__(self, keeper: KeeperClient, kept: Kept,
                 stdin: tuple[int, bytes] | None) -> None:
        self.pid = kept.pid
        self.start_ticks = kept.start_ticks
        # The keeper holds its end (for a restarted agent) until told it need not.
        self.release = functools.partial(keeper.release, kept.spawn_id)
        # Its cgroup, once the keeper has left it ("" when it has none).
        self.cgroup = kept.cgroup
        self._returncode = kept.returncode
        self._stdin = stdin
        self._feeder: asyncio.Task[None] | None = None
        self.exited = asyncio.Event()  # set once the process ended
        kept.returncode.add_done_callback(lambda _: self.exited.set())

    def feed(self) -> None:
        """Hand its stdin data (if any) to the process, closing its stdin after it."""
        if self._stdin is not None:
            self._feeder = asyncio.create_task(_feed(*self._stdin))
            self._stdin = None

    def close(self) -> None:
        if self._feeder is not None:
            self._feeder.cancel()
        if self._stdin is not None:  # never fed
            os.close(self._stdin[0])

    def returncode(self) -> int | None:
        """Negative: killed by that signal; None: unknown (its keeper went away)."""
        return self._returncode.result() if self._returncode.done() else None


async def spawn_kept(keeper: KeeperClient, launch: Launch, executable: str, stdout: int,
                     stderr: int, status_path: str, stdin: bytes | None) -> Spawned:
    """Have the keeper start the job; it writes the exit status to `status_path` if the
    agent goes away before releasing the job (`KeeperClient.release`)."""
    stdin_read, stdin_write = os.pipe() if stdin is not None else (keeper.devnull, -1)
    try:
        kept = await keeper.spawn(launch.argv, launch.env, launch.cwd,
                                  (stdin_read, stdout, stderr), status_path, executable)
    except KeeperError as exc:
        if stdin is not None:
            os.close(stdin_write)
        raise JobStartError(str(exc)) from None
    finally:
        if stdin is not None:
            os.close(stdin_read)
    feed = (stdin_write, stdin) if stdin is not None else None
    return Spawned(keeper, kept, feed)


async def _feed(fd: int, data: bytes) -> None:
    """Write `data` to a job's stdin pipe and close it (the job may never read it)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(fd, "wb", 0))
    transport.write(data)
    transport.close()
