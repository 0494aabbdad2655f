"""The agent's end of its keeper (`hodei_agent.keeper`): starts it, has it spawn jobs, and
learns how they end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hodei_agent.errors import AgentError
from hodei_agent.keeper import FDS_PER_SPAWN, HEADER, NO_CGROUPS, RELEASE, SEND_TIMEOUT

logger = logging.getLogger(__name__)


class KeeperError(AgentError):
    """The keeper could not start the job, or is gone."""


@dataclass(frozen=True)
class Kept:
    """A job the keeper started: its pid, its start time (clock ticks, for pid reuse), its
    cgroup once the keeper has left it ("" if it has none: not to be signalled before),
    and its return code once it ended (negative: killed by that signal; None: the keeper
    went away first, so nobody will say). `spawn_id` names it to `KeeperClient.release`."""

    pid: int
    start_ticks: int | None
    cgroup: asyncio.Future[str]
    returncode: asyncio.Future[int | None]
    spawn_id: int = 0


class KeeperClient:
    """Started by the agent; the keeper process itself starts on first use (and again if it
    died, for the jobs that come after). `cgroups`: contain each job in a cgroup of its own
    where cgroup v2 can be written (else, and when False, in its process group only)."""

    def __init__(self, *, cgroups: bool = True) -> None:
        self._cgroups = cgroups
        self._containment: str | None = None
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._placed: dict[int, asyncio.Future[str]] = {}
        self._next_id = 0
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The keeper process last started."""
        return self._process

    def start(self) -> None:
        if self._sock is not None:
            return
        if self._process is not None:
            self._process.poll()  # reap a keeper that went away
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-m", "hodei_agent.keeper", str(theirs.fileno())]
        if not self._cgroups:
            argv.append(NO_CGROUPS)
        try:
            self._process = subprocess.Popen(
                argv,
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # outlives the agent, as the jobs do
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(SEND_TIMEOUT)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_readable)
        self._sock = ours
        logger.debug("job keeper pid=%d", self._process.pid)

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str,
        fds: tuple[int, int, int], status_path: str, executable: str = "",
    ) -> Kept:
        """Start `argv` in a new session with `fds` as its stdin, stdout and stderr; the
        keeper writes its exit status to `status_path` when it ends. `executable`: the file
        to run, when the caller already looked it up (else it is found on env's PATH)."""
        try:
            self.start()
        except OSError as exc:
            raise KeeperError(f"cannot start the job keeper: {exc.strerror or exc}") from None
        assert self._sock is not None
        self._next_id += 1
        request_id = self._next_id
        payload = json.dumps({"id": request_id, "argv": list(argv), "env": dict(env),
                              "cwd": cwd, "status_path": status_path,
                              "executable": executable}).encode()
        data = HEADER.pack(len(payload), FDS_PER_SPAWN) + payload
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        try:
            sent = socket.send_fds(self._sock, [data], list(fds))
            if sent < len(data):
                self._sock.sendall(data[sent:])
        except OSError as exc:
            self._lost(f"cannot reach the job keeper: {exc}")
        answer = await reply
        if "error" in answer:
            raise KeeperError(str(answer["error"]))
        ticks = answer.get("start_ticks")
        return Kept(int(answer["pid"]), ticks if isinstance(ticks, int) else None,
                    answer["cgroup"], answer["returncode"], request_id)

    def release(self, spawn_id: int) -> None:
        """The job's end is recorded elsewhere now (the server acknowledged it): its keeper
        need not write its status file. Sent at once: once this returns, the keeper will
        not write it, even if the agent dies now, so the job's files may serve another job
        (whose status file that would be)."""
        if self._sock is None:
            return  # that keeper is gone; another one never knew the job
        payload = json.dumps({RELEASE: [spawn_id]}).encode()
        try:
            self._sock.sendall(HEADER.pack(len(payload), 0) + payload)
        except OSError as exc:
            self._lost(f"cannot reach the job keeper: {exc}")

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            return
        except OSError as exc:
            self._lost(f"the job keeper's socket failed: {exc}")
            return
        if not data:
            self._lost("the job keeper exited")
            return
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            message = json.loads(self._buffer[:end])
            del self._buffer[:end + 1]
            if "exit" in message:
                future = self._exits.pop(message["exit"], None)
                if future is not None and not future.done():
                    future.set_result(int(message["returncode"]))
                continue
            if "placed" in message:
                placed = self._placed.pop(message["placed"], None)
                if placed is not None and not placed.done():
                    placed.set_result(str(message["cgroup"]))
                continue
            if "containment" in message:
                self._contained(message)
                continue
            reply = self._replies.pop(message["id"], None)
            if "pid" in message:  # ready for what follows, which may come in this very read
                loop = asyncio.get_running_loop()
                message["returncode"] = self._exits[message["pid"]] = loop.create_future()
                message["cgroup"] = cgroup = loop.create_future()
                if message.get("contained"):
                    self._placed[message["pid"]] = cgroup
                else:
                    cgroup.set_result("")
            if reply is not None and not reply.done():
                reply.set_result(message)

    def _contained(self, message: dict[str, Any]) -> None:
        """Log how jobs are contained: once, and again only if a new keeper says otherwise."""
        how = str(message["containment"])
        if how == self._containment:
            return
        self._containment = how
        if "not_subreaper" in message:
            logger.warning("the job keeper cannot adopt what jobs leave behind (%s): their "
                           "processes may stay zombies once they end", message["not_subreaper"])
        if how == "cgroup":
            logger.info("each job runs in a cgroup of its own, under %s (killed with %s)",
                        message.get("where"), message.get("kill"))
        else:
            logger.warning(
                "jobs are contained by their process group only (%s): a process that leaves "
                "it (setsid) outlives its job's cancel, timeout and end",
                message.get("why"))

    def _lost(self, why: str) -> None:
        """The keeper is gone: jobs being started fail, the ends of started ones are
        unknown (their callers watch them some other way). The next spawn starts another."""
        logger.warning("%s; %d job(s) lose their exit status", why, len(self._exits))
        self._close_socket()
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(KeeperError(why))
        for future in self._exits.values():
            if not future.done():
                future.set_result(None)
        for placed in self._placed.values():
            if not placed.done():
                placed.set_result("")  # still in it, maybe: the keeper had not said
        self._replies.clear()
        self._exits.clear()
        self._placed.clear()
        self._buffer.clear()

    def _close_socket(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None

    def close(self) -> None:
        """Let go of the keeper: it records the ends not released (the agent had them, but
        the server may not) and those of the jobs still running, then exits."""
        self._close_socket()
        if self._process is not None:
            self._process.poll()
        os.close(self.devnull)
