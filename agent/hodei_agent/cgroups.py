"""Job cgroups (cgroup v2): each job in a cgroup of its own, so that whatever it starts — in
any session or process group, however fast it forks — can be killed with it.

The keeper makes a sub-tree in its own cgroup (the agent's), `hodei-keeper-<pid>-<start
ticks>/`, and in it one cgroup per job, `job-<n>`. The sub-tree enables
no controller: it contains, it does not limit, so cgroup v2's rule against processes in a
cgroup whose controllers are enabled for its children never comes into play (the agent's own
cgroup holds the agent, so it has none enabled either, unless it is the root). A job is in
its cgroup before it runs anything: the keeper, a single thread, waits in the cgroup the
next job gets and spawns it there (`JobCgroups`).

Standard library only: the keeper and the lease watchdog use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time

from hodei_agent.procgroup import start_ticks

KEEPER_PREFIX = "hodei-keeper-"
PROCS = "cgroup.procs"
_EVENTS = "cgroup.events"
_KILL = "cgroup.kill"
_FREEZE = "cgroup.freeze"
_MOUNTINFO = "/proc/self/mountinfo"
_OWN_CGROUP = "/proc/self/cgroup"
# Without cgroup.kill: how long to let a freeze take before killing what is listed.
FREEZE_WAIT = 0.5
_OCTAL = re.compile(r"\\([0-7]{3})")


class Unavailable(Exception):
    """cgroup v2 can't be used here (the message says why)."""


def cgroup2_mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(root in the hierarchy, mount point) of every cgroup2 mount in `mountinfo` (the text
    of /proc/self/mountinfo)."""
    mounts = []
    for line in mountinfo.splitlines():
        before, separator, after = line.partition(" - ")
        fields = before.split()
        if separator and len(fields) >= 5 and after.split()[:1] == ["cgroup2"]:
            mounts.append((_unescape(fields[3]), _unescape(fields[4])))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes a space as \\040 (and so on)."""
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


def locate(mountinfo: str, proc_cgroup: str) -> str:
    """The directory of a process's cgroup v2, from its /proc/PID/mountinfo and
    /proc/PID/cgroup (the `0::` line); raises Unavailable saying why there is none."""
    path = next((line[3:] for line in proc_cgroup.splitlines() if line.startswith("0::")), None)
    if path is None:
        raise Unavailable("the process is in no cgroup v2 hierarchy")
    mounts = cgroup2_mounts(mountinfo)
    if not mounts:
        raise Unavailable("no cgroup2 file system is mounted")
    # The mount whose root holds the cgroup (the deepest one, if several do).
    for root, point in sorted(mounts, key=lambda mount: len(mount[0]), reverse=True):
        base = root.rstrip("/")
        if path == root or path.startswith(base + "/"):
            return os.path.normpath(point + "/" + path[len(base):])
    raise Unavailable(f"its cgroup {path} is under no cgroup2 mount")


def _gone(exc: OSError) -> bool:
    """True when `exc` says the cgroup is gone: removed before the call, or while it read
    or wrote one of its files (ENODEV)."""
    return isinstance(exc, FileNotFoundError) or exc.errno == errno.ENODEV


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def processes(cgroup: str) -> list[int]:
    """The pids in `cgroup` (none once it is gone)."""
    try:
        with open(os.path.join(cgroup, PROCS), "rb") as procs:
            return [int(pid) for pid in procs.read().split()]
    except OSError as exc:
        if _gone(exc):
            return []
        raise


def populated(cgroup: str) -> bool:
    """True while a live process is in `cgroup` (zombies don't count)."""
    try:
        with open(os.path.join(cgroup, _EVENTS), "rb") as events:
            return b"populated 1" in events.read()
    except OSError as exc:
        if _gone(exc):
            return False
        raise


def signal_all(cgroup: str, signum: signal.Signals) -> None:
    """Send `signum` to every process in `cgroup` (one it forks meanwhile may miss it)."""
    for pid in processes(cgroup):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def kill(cgroup: str, *, kill_file: bool = True) -> None:
    """SIGKILL every process in `cgroup`, what they fork meanwhile included.

    `cgroup.kill` (Linux 5.14) does it in one step; `kill_file=False` does without it, as on
    older kernels: the cgroup is frozen (a frozen process can't fork, and a fatal signal
    still ends it), each process is killed, and the cgroup thawed. That waits up to
    FREEZE_WAIT for the freeze to take; what a process forked before it took (or, before
    Linux 5.2, which has no freezer, while it was killed) is left for the next call, so
    callers call again until the cgroup is empty.
    """
    if kill_file:
        try:
            _write(os.path.join(cgroup, _KILL), b"1")
            return
        except OSError as exc:
            if _gone(exc) and not os.path.isdir(cgroup):
                return
            # No cgroup.kill (before Linux 5.14), or not allowed to write it.
    freeze = os.path.join(cgroup, _FREEZE)
    try:
        _write(freeze, b"1")
        frozen = True
    except OSError as exc:
        if _gone(exc) and not os.path.isdir(cgroup):
            return
        frozen = False  # before Linux 5.2 there is no freezer either: callers call again
    deadline = time.monotonic() + FREEZE_WAIT
    while frozen and not _frozen(cgroup) and time.monotonic() < deadline:
        time.sleep(0.002)
    signal_all(cgroup, signal.SIGKILL)
    if frozen:
        with contextlib.suppress(OSError):
            _write(freeze, b"0")


def _frozen(cgroup: str) -> bool:
    try:
        with open(os.path.join(cgroup, _EVENTS), "rb") as events:
            return b"frozen 1" in events.read()
    except OSError as exc:
        if _gone(exc):
            return True
        raise


def remove(cgroup: str) -> bool:
    """Remove `cgroup` if no process is left in it, with the empty cgroups below it; True
    once it is gone."""
    try:
        os.rmdir(cgroup)
        return True
    except OSError as exc:
        if _gone(exc):
            return True
        if exc.errno != errno.EBUSY or populated(cgroup):
            return False
    # Empty, but with cgroups of its own (made by an agent run as a job, say).
    with contextlib.suppress(FileNotFoundError), os.scandir(cgroup) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                remove(entry.path)
    try:
        os.rmdir(cgroup)
    except OSError as exc:
        return _gone(exc)
    return True


def prune(home: str) -> None:
    """Remove the sub-trees that keepers which are gone left in `home`, where empty."""
    try:
        names = os.listdir(home)
    except OSError:
        return
    for name in names:
        if not name.startswith(KEEPER_PREFIX):
            continue
        pid, _, ticks = name[len(KEEPER_PREFIX):].partition("-")
        if pid.isdigit() and ticks.isdigit() and start_ticks(int(pid)) == int(ticks):
            continue  # its keeper still runs
        remove(os.path.join(home, name))


class JobCgroups:
    """A keeper's sub-tree of cgroups: one per job, the next of which it waits in.

    Moving a process into another cgroup can wait for an RCU grace period (10 ms and more
    on a busy machine) when no other move happened lately. So the keeper does not move
    before a spawn but after it: it waits in the cgroup the next job gets (`staged`), spawns
    the job there, and then moves into a new one (`restage`). Only after that move may the
    job's cgroup be signalled, or the keeper would be killed with the job.
    """

    def __init__(self, home: str, tree: str) -> None:
        self.home = home
        self.tree = tree
        self.kill_file = os.path.exists(os.path.join(tree, _KILL))
        self.staged: str | None = None
        self._made = 0
        self._home_procs = os.open(os.path.join(home, PROCS), os.O_WRONLY | os.O_CLOEXEC)

    @classmethod
    def create(cls) -> JobCgroups:
        """Make this process's sub-tree in its cgroup and move into the first job's cgroup
        there; raises Unavailable saying why it can't."""
        try:
            with open(_MOUNTINFO) as mountinfo, open(_OWN_CGROUP) as own:
                home = locate(mountinfo.read(), own.read())
        except OSError as exc:
            raise Unavailable(f"cannot read /proc: {exc.strerror or exc}") from None
        prune(home)
        pid = os.getpid()
        tree = os.path.join(home, f"{KEEPER_PREFIX}{pid}-{start_ticks(pid)}")
        try:
            os.mkdir(tree)
        except OSError as exc:
            raise Unavailable(f"cannot create {tree}: {exc.strerror or exc}") from None
        try:
            cgroups = cls(home, tree)
            reason = cgroups.restage()
        except OSError as exc:
            reason = exc.strerror or str(exc)
        if reason is not None:
            remove(tree)
            raise Unavailable(f"cannot move a process into a cgroup under {tree}: {reason}")
        return cgroups

    def restage(self) -> str | None:
        """Move into a new, empty cgroup for the next job (out of the one this process was
        in); returns why it couldn't, and then this process is back in its own cgroup with
        none staged. Raises OSError when it could not even leave the cgroup it was in."""
        self._made += 1
        path = os.path.join(self.tree, f"job-{self._made}")
        try:
            os.mkdir(path)
            _write(os.path.join(path, PROCS), b"0")  # 0: the writer
        except OSError as exc:
            self.staged = None
            os.write(self._home_procs, b"0")
            remove(path)
            return exc.strerror or str(exc)
        self.staged = path
        return None

    def close(self) -> None:
        """Move back to this process's own cgroup and remove the sub-tree (once its jobs'
        cgroups are gone)."""
        if self.staged is not None:
            with contextlib.suppress(OSError):
                os.write(self._home_procs, b"0")
                remove(self.staged)
        os.close(self._home_procs)
        remove(self.tree)
