"""Every process of one job, as the agent signals and waits for them: its cgroup where it has
one (`hodei_agent.cgroups`), and its process group.

The cgroup holds whatever the job started, whatever session or process group it made; the
process group is what holds them where there is no cgroup (a process that calls `setsid`
leaves it). Neither needs the agent to be the job's parent, so a restarted agent and the
lease watchdog act on them just the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

from hodei_agent import cgroups
from hodei_agent.procgroup import group_exists, signal_group

logger = logging.getLogger(__name__)

GONE_POLL = 0.02
# How long to wait for the killed processes of a job to disappear before moving on.
GONE_TIMEOUT = 2.0


@dataclass
class JobProcesses:
    """A job's processes: the process group `pgid` (None: not to be signalled, its leader's
    pid now names another process) and the cgroup at `cgroup` ("" if it has none, or while
    its keeper, still in it, has not said)."""

    pgid: int | None
    cgroup: str = ""

    @property
    def known(self) -> bool:
        """False when nothing is left to name them by."""
        return self.pgid is not None or bool(self.cgroup)

    def signal(self, signum: signal.Signals) -> bool:
        """Send `signum` to every process of the job; SIGKILL also reaches what they fork
        meanwhile (a cgroup's processes). False when none was there to signal."""
        found = False
        if self.cgroup:
            found = cgroups.populated(self.cgroup)
            if found and signum == signal.SIGKILL:
                cgroups.kill(self.cgroup)
            elif found:
                cgroups.signal_all(self.cgroup, signum)
        if self.pgid is not None:
            found = signal_group(self.pgid, signum) or found
        return found

    def exist(self) -> bool:
        """True while any process of the job is left (in its group, zombies included)."""
        if self.cgroup and cgroups.populated(self.cgroup):
            return True
        return self.pgid is not None and group_exists(self.pgid)

    async def wait_gone(self, *, killing: bool = False) -> None:
        """Return once no process of the job is left (bound it with `asyncio.timeout`);
        `killing`: SIGKILL whatever is still there at each look (without cgroup.kill,
        what a process forked while being killed is killed at the next)."""
        # Nothing signals that a process group emptied, so poll it.
        while self.exist():
            if killing:
                self.signal(signal.SIGKILL)
            await asyncio.sleep(GONE_POLL)

    async def kill(self) -> bool:
        """SIGKILL every process of the job and wait up to GONE_TIMEOUT until none is left;
        False if some still are."""
        self.signal(signal.SIGKILL)
        try:
            async with asyncio.timeout(GONE_TIMEOUT):
                await self.wait_gone(killing=True)
        except TimeoutError:
            return False
        return True

    def remove(self, *, tidy: bool = False) -> bool:
        """Remove the job's cgroup once it is empty (its keeper may have done so already);
        `tidy`: also what keepers that are gone left beside it (a re-attached job's keeper
        may be one). True when it is gone: no process of the job is left anywhere."""
        if not self.cgroup:
            return False
        gone = cgroups.remove(self.cgroup)
        if not gone:
            logger.warning("cgroup %s is not empty; left in place", self.cgroup)
        if tidy:
            cgroups.prune(os.path.dirname(os.path.dirname(self.cgroup)))
        return gone
