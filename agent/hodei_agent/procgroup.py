"""Processes by pid and process group: naming one across pid reuse, signalling and reaping.

Standard library only, no asyncio: the keeper and the lease watchdog use it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

logger = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (when the process started); None if it does not exist.

    With the pid, it names a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def become_subreaper() -> str | None:
    """Make orphaned descendants of this process its children instead of PID 1's (Linux);
    returns why not, or None.

    A job's process whose parent exits (a double fork, `nohup … &`) is re-parented to the
    nearest subreaper among its ancestors, else to PID 1, which in a container or a small
    VM often never reaps it: it would stay a zombie. The keeper, every job's parent, is
    their subreaper and reaps them.
    """
    if not sys.platform.startswith("linux"):
        return "not Linux"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return None
        return os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        return str(exc)


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send `signum` to the group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        logger.warning("not allowed to signal process group %d", pgid)
        return False
    return True


def group_exists(pgid: int) -> bool:
    """True while any process (zombies included) is in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_adopted(own: Mapping[int, subprocess.Popen[bytes]]) -> int:
    """Reap every child that has ended; returns how many were not in `own`.

    For a process that adopts others (PID 1 of a container): children it started itself
    (`own`) are reaped through their Popen, which keeps their exit status; the others are
    orphans it inherited, whose status nobody wants.
    """
    adopted = 0
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return adopted
        if ended is None:
            return adopted
        process = own.get(ended.si_pid)
        if process is not None and process.poll() is not None:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ended.si_pid, 0)
        if process is None:
            adopted += 1
