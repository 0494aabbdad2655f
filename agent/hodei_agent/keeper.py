"""The keeper: the parent of an agent's jobs, so that they can outlive the agent.

A job whose agent dies goes on running; a restarted agent re-attaches to it (`runner`),
and needs its exit status even if it ended while no agent was there. Only a process's
parent learns that status, so the jobs' parent must outlive the agent: this small process
(started by the agent, standard library only, no gRPC) spawns each job when the agent asks
and writes the job's exit status to the file the agent named when the job ends, then tells
the agent. When the agent goes away, the keeper keeps reaping and recording until its last
job, and whatever the jobs left that it adopted, has ended, then exits. (The alternative, a
shell wrapper around each job that records its status, costs an extra exec per job.)

It also contains what each job starts. Where cgroup v2 can be written, each job runs in a
cgroup of its own (`hodei_agent.cgroups`), which the agent (or the lease watchdog) kills as a
whole, whatever sessions or process groups the job's processes made; the keeper spawns the
job in it, so it is there before it runs anything, and removes it once it is empty. And the
keeper is the subreaper of the jobs' processes: one whose parent exits (a double fork,
`nohup … &`) is re-parented to it rather than to PID 1, and reaped when it ends.

The agent talks to it over a socketpair: requests are framed JSON, a spawn with the job's
stdin, stdout and stderr passed as file descriptors (SCM_RIGHTS), a release without; replies,
the job's cgroup (sent once the keeper has left it), exit reports and a first message saying
how jobs are contained are JSON lines.

The exit status file is written only when it may be needed: while the agent is there, the
keeper holds each ended job's status until the agent releases it (the server has its
result, and the agent forgets the job); whatever the agent did not release when it goes
away, and every job that ends after that, is written then. A file created and removed per
job is two file-system operations the usual job never needs.

`python -m hodei_agent.keeper FD [--no-cgroups]`
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import cast

from hodei_agent import cgroups
from hodei_agent.cgroups import JobCgroups, Unavailable
from hodei_agent.procgroup import become_subreaper, start_ticks

# A request: payload length and how many file descriptors came with it, then the payload.
HEADER = struct.Struct("!II")
MAX_REQUEST_BYTES = 16 * 1024 * 1024
FDS_PER_SPAWN = 3
# A request with no descriptors: {"release": [spawn ids]}, the ends the agent is done with.
RELEASE = "release"
# How long a report may wait for the agent to read it before the agent counts as gone.
SEND_TIMEOUT = 10.0
# Python ignores these at start-up; a job must get the default disposition back.
_IGNORED_BY_PYTHON = (signal.SIGPIPE, signal.SIGXFSZ)
NO_CGROUPS = "--no-cgroups"


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: a process killed by signal N reports 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def write_status(path: str, status: int) -> None:
    """Record a job's exit status where the agent (this one or a restarted one) reads it: a
    few bytes in one write, which a reader sees whole or not at all (then it looks again)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{status}\n".encode())
    finally:
        os.close(fd)


def resolve(program: str, env: dict[str, str], cwd: str) -> str:
    """The file exec runs for `program`, found as the job's own PATH says."""
    if "/" in program:
        return os.path.join(cwd, program)
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return found


@dataclass
class _Child:
    status_path: str
    cgroup: str
    request_id: object = None


@dataclass
class Keeper:
    sock: socket.socket
    # Where the jobs' cgroups go; None: jobs are contained by their process group only.
    job_cgroups: JobCgroups | None
    # Readable when a child ended (SIGCHLD's wakeup fd).
    child_ended: int
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    children: dict[int, _Child] = field(default_factory=dict)
    buffer: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    agent_gone: bool = False
    # Spawn id -> (status path, exit code) of each job that ended and that the agent has not
    # released yet: written to its status file if the agent goes away first.
    ended: dict[object, tuple[str, int]] = field(default_factory=dict)

    def run(self, containment: dict[str, object]) -> None:
        """Tell the agent how jobs are contained, then serve it until it has gone and every
        process of the jobs that is its child (adopted ones included) has ended."""
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, "agent")
        self.selector.register(self.child_ended, selectors.EVENT_READ, "child")
        self._send(containment)
        while not (self.agent_gone and not self.children and not _has_children()):
            for key, _ in self.selector.select():
                if key.data == "agent":
                    self._read_requests()
                else:
                    self._reap()
        if self.job_cgroups is not None:
            self.job_cgroups.close()

    def _read_requests(self) -> None:
        try:
            # Close-on-exec: a job gets its three descriptors, never another's.
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 64, socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        self.fds.extend(fds)
        if not data:
            self._agent_left()
            return
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            length, nfds = HEADER.unpack_from(self.buffer)
            if length > MAX_REQUEST_BYTES or nfds not in (0, FDS_PER_SPAWN):
                self._agent_left()  # not our agent speaking: stop listening
                return
            if len(self.buffer) < HEADER.size + length or len(self.fds) < nfds:
                return
            payload = bytes(self.buffer[HEADER.size:HEADER.size + length])
            del self.buffer[:HEADER.size + length]
            if nfds == 0:
                self._release(json.loads(payload))
                continue
            passed, self.fds = self.fds[:nfds], self.fds[nfds:]
            try:
                self._spawn(json.loads(payload), passed)
            finally:
                for fd in passed:
                    os.close(fd)

    def _release(self, request: dict[str, object]) -> None:
        """The agent is done with these jobs' ends: their status is needed no more."""
        released = request.get(RELEASE)
        if isinstance(released, list):
            for request_id in released:
                self.ended.pop(request_id, None)

    def _spawn(self, request: dict[str, object], fds: list[int]) -> None:
        reply: dict[str, object] = {"id": request.get("id")}
        cgroup = self._staged()
        try:
            argv = cast(list[str], request["argv"])
            env = cast(dict[str, str], request["env"])
            cwd = cast(str, request["cwd"])
            executable = str(request.get("executable") or resolve(argv[0], env, cwd))
            # posix_spawn has no working-directory action: this process (a single thread)
            # moves there for the spawn, and back. Nor has it a cgroup action: the job
            # starts in the cgroup this process waits in.
            os.chdir(cwd)
            try:
                pid = os.posix_spawn(
                    executable, argv, env,
                    file_actions=[(os.POSIX_SPAWN_DUP2, fd, target)
                                  for target, fd in enumerate(fds)],
                    setsid=True,
                    setsigdef=_IGNORED_BY_PYTHON,  # the job gets default dispositions
                )
            finally:
                os.chdir("/")
        except OSError as exc:
            reply["error"] = (f"{exc.strerror}: {exc.filename}" if exc.filename
                              else exc.strerror or str(exc))
        except (ValueError, TypeError, KeyError) as exc:
            reply["error"] = str(exc)
        if "error" in reply:
            self._send(reply)  # the cgroup stays, empty, for the next job
            return
        child = self.children[pid] = _Child(str(request["status_path"]), cgroup,
                                            request.get("id"))
        reply.update(pid=pid, start_ticks=start_ticks(pid), contained=bool(cgroup))
        self._send(reply)  # at once: leaving the cgroup may take a while
        if cgroup:
            child.cgroup = self._move_on()
            self._send({"placed": pid, "cgroup": child.cgroup})

    def _staged(self) -> str:
        """The cgroup the next job starts in (this process is in it); "" if none."""
        if self.job_cgroups is None:
            return ""
        if self.job_cgroups.staged is None:  # the last try failed: once more
            with contextlib.suppress(OSError):  # from its own cgroup, there is none to leave
                self.job_cgroups.restage()
        return self.job_cgroups.staged or ""

    def _move_on(self) -> str:
        """Leave the cgroup a job was just spawned in for the next job's; returns the job's
        cgroup, or "" if this process could not leave it (then no job gets a cgroup any
        more, since a kill of that one would take the keeper)."""
        assert self.job_cgroups is not None and self.job_cgroups.staged is not None
        cgroup = self.job_cgroups.staged
        try:
            why = self.job_cgroups.restage()
        except OSError as exc:
            sys.stderr.write(f"hodei-agent keeper: cannot leave {cgroup} ({exc}); no more job "
                             "cgroups\n")
            self.job_cgroups = None
            return ""
        if why is not None:
            sys.stderr.write(f"hodei-agent keeper: no cgroup ready for the next job: {why}\n")
        return cgroup

    def _reap(self) -> None:
        """Reap every child that ended: a job (record and report its status) or a process
        a job left behind, adopted as subreaper (nothing to report)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.child_ended, 4096)  # before reaping: a later SIGCHLD wakes us again
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            returncode = os.waitstatus_to_exitcode(wait_status)
            if child.cgroup:
                # Most jobs leave nothing behind: then the cgroup goes now. Leftovers are the
                # agent's to kill (after the grace, if it is stopping the job).
                cgroups.remove(child.cgroup)
            if self.agent_gone:
                with contextlib.suppress(OSError):
                    write_status(child.status_path, exit_code_of(returncode))
                continue
            self.ended[child.request_id] = (child.status_path, exit_code_of(returncode))
            self._send({"exit": pid, "returncode": returncode})

    def _send(self, message: dict[str, object]) -> None:
        if self.agent_gone:
            return
        line = json.dumps(message).encode() + b"\n"
        try:
            self.sock.settimeout(SEND_TIMEOUT)
            self.sock.sendall(line)
        except OSError:
            self._agent_left()
        else:
            self.sock.setblocking(False)

    def _agent_left(self) -> None:
        """The agent died or closed: finish recording what runs, then exit."""
        if self.agent_gone:
            return
        self.agent_gone = True
        # First what a restarted agent may need: the ends this one did not release.
        for status_path, status in self.ended.values():
            with contextlib.suppress(OSError):
                write_status(status_path, status)
        self.ended.clear()
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.sock)
        self.sock.close()
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def containment(use_cgroups: bool) -> tuple[JobCgroups | None, dict[str, object]]:
    """Set up this process to contain jobs; returns its cgroup sub-tree (None: none) and a
    message telling the agent how jobs are contained."""
    message: dict[str, object] = {"containment": "process-group"}
    not_reaping = become_subreaper()
    if not_reaping is not None:
        message["not_subreaper"] = not_reaping
    if not use_cgroups:
        message["why"] = "cgroups are turned off"
        return None, message
    try:
        job_cgroups = JobCgroups.create()
    except Unavailable as exc:
        message["why"] = str(exc)
        return None, message
    message.update(containment="cgroup", where=job_cgroups.tree,
                   kill="cgroup.kill" if job_cgroups.kill_file else "freeze")
    return job_cgroups, message


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg != NO_CGROUPS]
    use_cgroups = len(args) == len(sys.argv) - 1
    if len(args) != 1 or not args[0].isdigit():
        sys.stderr.write(f"usage: python -m hodei_agent.keeper FD [{NO_CGROUPS}] (started by "
                         "the agent)\n")
        sys.exit(2)
    # The agent starts it in a session of its own, so that the signals of a terminal or
    # of the agent's process group don't reach it. Its signal dispositions stay the
    # defaults, which the jobs inherit (SIGCHLD's handler is reset when a job execs).
    fd = int(args[0])
    os.set_inheritable(fd, False)  # the jobs must not hold the agent's line
    os.chdir("/")
    child_ended, wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    job_cgroups, message = containment(use_cgroups)
    Keeper(socket.socket(fileno=fd), job_cgroups, child_ended).run(message)


if __name__ == "__main__":
    main()
