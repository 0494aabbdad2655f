"""Job cgroups: finding cgroup v2, placing a process before it runs, killing a whole cgroup."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hodei_agent import cgroups
from hodei_agent.cgroups import KEEPER_PREFIX, JobCgroups, Unavailable, locate
from tests.cgroupsupport import skip_without_job_cgroups

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
# A container's view with the host's cgroup namespace: its cgroup is the mount's root.
CONTAINER = ("612 600 0:26 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup ro\n"
             "613 600 0:26 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n")


def test_the_cgroup_is_found_where_its_hierarchy_is_mounted() -> None:
    assert locate(HYBRID, "4:memory:/x\n0::/\n") == "/sys/fs/cgroup/unified"
    assert locate(HYBRID, "0::/system.slice/hodei.service\n") == (
        "/sys/fs/cgroup/unified/system.slice/hodei.service")
    assert locate(PURE_V2, "0::/user.slice/a b\n") == "/sys/fs/cgroup/user.slice/a b"
    # The deepest mount holding it wins; mountinfo's escapes are read.
    assert locate(CONTAINER, "0::/docker/abc\n") == "/sys/fs/cgroup"
    assert locate(CONTAINER, "0::/docker/abc/job\n") == "/sys/fs/cgroup/job"
    assert locate(CONTAINER, "0::/other\n") == "/mnt/with space/other"


@pytest.mark.parametrize(("mountinfo", "own", "why"), [
    (HYBRID, "4:memory:/x\n", "in no cgroup v2 hierarchy"),
    ("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "0::/\n", "no cgroup2 file system"),
    ("612 600 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup ro\n", "0::/../outside\n",
     "under no cgroup2 mount"),
])
def test_no_usable_cgroup_says_why(mountinfo: str, own: str, why: str) -> None:
    with pytest.raises(Unavailable, match=why):
        locate(mountinfo, own)


@pytest.fixture
def job_cgroups() -> Iterator[JobCgroups]:
    """This test process's own sub-tree (it waits in its cgroups, as a keeper does)."""
    skip_without_job_cgroups()
    home = own_cgroup("self")
    tree = JobCgroups.create()
    try:
        yield tree
    finally:
        tree.close()
    assert not os.path.exists(tree.tree)
    assert own_cgroup("self") == home


def start(tree: JobCgroups, *argv: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start `argv` in the cgroup staged for it, and move on, as the keeper does."""
    cgroup = tree.staged
    assert cgroup is not None
    process = subprocess.Popen(argv, start_new_session=True)
    assert tree.restage() is None
    return cgroup, process


def own_cgroup(pid: int | str) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1]


def test_a_process_spawned_while_staged_runs_in_that_cgroup_which_we_then_leave(
    job_cgroups: JobCgroups,
) -> None:
    assert job_cgroups.staged is not None
    assert own_cgroup("self").endswith("/job-1")
    cgroup, process = start(job_cgroups, "sleep", "30")
    try:
        assert cgroup.endswith("/job-1") and own_cgroup("self").endswith("/job-2")
        assert cgroups.processes(cgroup) == [process.pid]
        assert own_cgroup(process.pid).endswith("/job-1")
        assert cgroups.populated(cgroup)
        assert not cgroups.remove(cgroup)  # not while a process is in it
    finally:
        process.kill()
        process.wait()
    assert not cgroups.populated(cgroup)
    assert cgroups.remove(cgroup) and not os.path.exists(cgroup)
    assert cgroups.remove(cgroup)  # gone already: fine


# Forks as fast as it can, in new sessions, while being killed.
FORKER = "setsid sh -c 'while :; do sleep 300 & done' & sleep 300"


@pytest.mark.parametrize("kill_file", [True, False], ids=["cgroup.kill", "freeze"])
def test_kill_takes_every_process_even_one_that_keeps_forking(
    job_cgroups: JobCgroups, kill_file: bool,
) -> None:
    cgroup, leader = start(job_cgroups, "sh", "-c", FORKER)
    try:
        deadline = time.monotonic() + 10
        while len(cgroups.processes(cgroup)) < 50:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        while cgroups.populated(cgroup):
            # Without cgroup.kill, what forked before the freeze took is left for the next.
            cgroups.kill(cgroup, kill_file=kill_file)
            assert time.monotonic() - started < 10, "the cgroup should empty"
            time.sleep(0.01)
    finally:
        leader.kill()
        leader.wait()
    assert cgroups.processes(cgroup) == []
    assert cgroups.remove(cgroup)


def test_remove_takes_empty_cgroups_below_and_leaves_a_populated_one(
    job_cgroups: JobCgroups,
) -> None:
    cgroup, process = start(job_cgroups, "true")
    process.wait()
    os.makedirs(os.path.join(cgroup, "a", "b"))
    busy, process = start(job_cgroups, "sleep", "30")
    try:
        assert cgroups.remove(cgroup) and not os.path.exists(cgroup)
        assert not cgroups.remove(busy) and os.path.isdir(busy)
    finally:
        process.kill()
        process.wait()


def test_what_gone_keepers_left_is_pruned_and_live_ones_kept(job_cgroups: JobCgroups) -> None:
    # A keeper that is gone: a pid that now names no process, or another process.
    stale = [os.path.join(job_cgroups.home, f"{KEEPER_PREFIX}{pid}-1") for pid in (
        2 ** 22 + 1, os.getpid())]
    for tree in stale:
        os.makedirs(os.path.join(tree, "job-1"))
    cgroups.prune(job_cgroups.home)
    assert not any(os.path.exists(tree) for tree in stale)
    assert os.path.isdir(job_cgroups.tree)  # ours: its keeper (this process) runs


def test_a_user_without_delegation_gets_the_reason(tmp_path: Path) -> None:
    """What the keeper's probe says where it cannot make its sub-tree (a user the cgroup
    was not delegated to; a container's read-only cgroup file system is the same case)."""
    skip_without_job_cgroups()
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to become another user) and setpriv")
    probe = ("import sys; from hodei_agent.cgroups import JobCgroups, Unavailable\n"
             "try:\n    JobCgroups.create().close()\nexcept Unavailable as e:\n"
             "    print(e); sys.exit(3)\n")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         probe], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "cannot create" in result.stdout and "Permission denied" in result.stdout
