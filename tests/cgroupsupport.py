"""Whether this machine lets the agent's keeper give each job a cgroup of its own."""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest

_PROBE = "from hodei_agent.cgroups import JobCgroups; JobCgroups.create().close()"


@functools.cache
def job_cgroups_usable() -> bool:
    """True where cgroup v2 is mounted and writable by this user (what the keeper checks)."""
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=30)
    return probe.returncode == 0


def skip_without_job_cgroups() -> None:
    if not job_cgroups_usable():
        pytest.skip("cgroup v2 is not writable here: jobs get no cgroup of their own")
