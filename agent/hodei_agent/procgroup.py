"""Signalling and reaping a job's process group."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children instead of PID 1's (Linux).

    A job's processes that outlive their parent would otherwise be re-parented to PID 1,
    and in containers PID 1 often never reaps them: their zombies keep the job's process
    group alive. As their subreaper the agent can reap them itself (`reap_group`).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if not ok:
        logger.warning("cannot become child subreaper: %s", os.strerror(ctypes.get_errno()))
    return ok


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


def reap_group(pgid: int) -> None:
    """Reap zombies of the group that are our children (orphans we adopted as subreaper).

    Only call this once the group leader has been waited for: it would otherwise steal the
    leader's exit status from asyncio.
    """
    while True:
        try:
            result = os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return
        if result is None:
            return


def group_exists(pgid: int) -> bool:
    """True while any process (zombies included) is in the group."""
    reap_group(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_group_gone(pgid: int, poll: float = 0.02) -> None:
    """Return once the group is empty (bound it with `asyncio.timeout`)."""
    # Nothing signals that a process group emptied, so poll it.
    while group_exists(pgid):  # noqa: ASYNC110
        await asyncio.sleep(poll)
