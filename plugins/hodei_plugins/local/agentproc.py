"""An agent process the `local` provider watches, and the record it keeps of it.

The provider keeps, in each agent's state dir, a record (`provider.json`, 0600) of how it
started the agent and which process runs it now. A server process that comes after (the
previous one was killed, or stopped without stopping its agents) reads the records to take
the agents over: it cannot `wait` for processes that are not its children, so it names them
by pid and start time (which tells a pid from its reuse) and looks them up in /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_FILE = "provider.json"
# Where the agent keeps its worker identity (`hodei_agent.statedir`): present from its
# registration until it drains or is refused, so an agent that exited without it has
# nothing left to come back for.
IDENTITY_FILE = "identity.json"
_POLL_SECONDS = 0.05


def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":  # exited, not yet reaped
        return None
    return int(fields[19])


def has_identity(state_dir: Path) -> bool:
    """Whether the agent of `state_dir` is a registered worker that has not drained."""
    return (state_dir / IDENTITY_FILE).is_file()


def with_server(argv: list[str], address: str) -> list[str]:
    """`argv` of an agent, told to dial `address`."""
    out = list(argv)
    for index, arg in enumerate(out[:-1]):
        if arg == "--server":
            out[index + 1] = address
    return out


@dataclass(frozen=True)
class AgentRecord:
    """How the provider started an agent (its argv, without the bootstrap token, which is
    passed in the environment) and the process that runs it now."""

    provider: str
    argv: list[str]
    pid: int
    start_ticks: int | None

    @property
    def server(self) -> str:
        """The address the agent dials."""
        for index, arg in enumerate(self.argv[:-1]):
            if arg == "--server":
                return self.argv[index + 1]
        return ""


def write_record(state_dir: Path, record: AgentRecord) -> None:
    """Write `state_dir/provider.json` (0600) atomically."""
    path = state_dir / RECORD_FILE
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(asdict(record), file)
    os.replace(temp, path)


def read_record(state_dir: Path) -> AgentRecord | None:
    """The record in `state_dir`, None if there is none or it is unreadable."""
    try:
        raw = json.loads((state_dir / RECORD_FILE).read_bytes())
        return AgentRecord(provider=str(raw["provider"]),
                           argv=[str(arg) for arg in raw["argv"]],
                           pid=int(raw["pid"]),
                           start_ticks=None if raw["start_ticks"] is None
                           else int(raw["start_ticks"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class AgentProcess:
    """A running agent: the provider's own child, or one a previous server process started
    (adopted), whose exit status no one here can learn."""

    def __init__(self, pid: int, ticks: int | None,
                 child: asyncio.subprocess.Process | None = None) -> None:
        self.pid = pid
        self.ticks = ticks
        self._child = child

    @classmethod
    async def spawn(cls, argv: list[str], env: dict[str, str]) -> AgentProcess:
        """Start `argv` in a session of its own (a terminal's signals don't reach it)."""
        child = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )
        return cls(child.pid, start_ticks(child.pid), child)

    @classmethod
    def adopt(cls, record: AgentRecord) -> AgentProcess | None:
        """The process a record names, None if it is gone."""
        if record.start_ticks is None or start_ticks(record.pid) != record.start_ticks:
            return None
        return cls(record.pid, record.start_ticks)

    @property
    def running(self) -> bool:
        if self._child is not None:
            return self._child.returncode is None
        return start_ticks(self.pid) == self.ticks

    @property
    def returncode(self) -> int | None:
        """How a child ended (negative: the signal that killed it); None while it runs, and
        always for an adopted process."""
        return None if self._child is None else self._child.returncode

    def record(self, provider: str, argv: list[str]) -> AgentRecord:
        return AgentRecord(provider, argv, self.pid, self.ticks)

    def send(self, signum: signal.Signals) -> None:
        """Signal the agent (and nothing else: an adopted pid is checked for reuse first)."""
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for the process to end; True if it did."""
        if self._child is not None:
            try:
                await asyncio.wait_for(self._child.wait(), seconds)
            except TimeoutError:
                return False
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.running:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)
        return True
