"""The keeper: the jobs' parent, which records how they end even after the agent is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hodei_agent import cgroups
from hodei_agent.keeperclient import KeeperClient, KeeperError, Kept
from hodei_agent.procgroup import start_ticks
from tests.cgroupsupport import skip_without_job_cgroups


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def spawn(keeper: KeeperClient, script: str, status: Path, cwd: str = "/") -> Kept:
    out = os.open(os.devnull, os.O_WRONLY)
    try:
        return await keeper.spawn(["sh", "-c", script], {"PATH": os.defpath}, cwd,
                                  (keeper.devnull, out, out), str(status))
    finally:
        os.close(out)


def cgroup_of(pid: int) -> str:
    """The process's cgroup v2 path, as /proc/PID/cgroup says (relative to the mount)."""
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1].removeprefix("0::")


def cgroup_exists(path: str) -> bool:
    return os.path.isdir(path)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_it_reports_each_end_and_records_those_not_released(tmp_path: Path) -> None:
    """While the agent is there, an end is only reported; the keeper writes the status files
    of the ends the agent did not release once it is gone (a restarted agent needs them)."""
    keeper_pid = 0

    async def scenario() -> list[int | None]:
        nonlocal keeper_pid
        keeper = KeeperClient()
        try:
            jobs = [await spawn(keeper, script, tmp_path / f"{n}.status")
                    for n, script in enumerate(["exit 0", "exit 7", "kill -INT $$", "exit 5"])]
            codes = [await job.returncode for job in jobs]
            keeper_pid = keeper.pid or 0
            await asyncio.sleep(0.2)
            assert not os.listdir(tmp_path), "nothing is written while the agent is there"
            keeper.release(jobs[3].spawn_id)
            return codes
        finally:
            keeper.close()

    # A job gets default signal dispositions: SIGINT kills it.
    assert asyncio.run(scenario()) == [0, 7, -signal.SIGINT, 5]
    wait_until(lambda: not alive(keeper_pid), "the keeper exits once the agent left")
    assert [(tmp_path / f"{n}.status").read_text() for n in range(3)] == ["0\n", "7\n", "130\n"]
    assert not (tmp_path / "3.status").exists(), "a released end is not written"


def test_what_cannot_start_is_said(tmp_path: Path) -> None:
    async def scenario() -> None:
        keeper = KeeperClient()
        try:
            with pytest.raises(KeeperError, match="No such file or directory"):
                await spawn(keeper, "true", tmp_path / "status", cwd=str(tmp_path / "nowhere"))
            assert (await (await spawn(keeper, "true", tmp_path / "s")).returncode) == 0
        finally:
            keeper.close()

    asyncio.run(scenario())


def test_it_outlives_its_agent_until_its_last_job_ended(tmp_path: Path) -> None:
    go = tmp_path / "go"

    async def start() -> tuple[int, int]:
        keeper = KeeperClient()
        job = await spawn(keeper, f"while [ ! -e {go} ]; do sleep 0.01; done; exit 4",
                          tmp_path / "status")
        assert keeper.pid is not None
        keeper.close()  # as when the agent dies
        return keeper.pid, job.pid

    keeper_pid, job_pid = asyncio.run(start())
    time.sleep(0.3)
    assert alive(keeper_pid) and alive(job_pid)
    go.touch()
    deadline = time.monotonic() + 10
    while alive(keeper_pid):
        assert time.monotonic() < deadline, "the keeper should exit after its last job"
        time.sleep(0.02)
    assert (tmp_path / "status").read_text() == "4\n"


def test_a_keeper_that_dies_leaves_the_ends_unknown_and_is_replaced(tmp_path: Path) -> None:
    async def scenario() -> None:
        keeper = KeeperClient()
        try:
            job = await spawn(keeper, "sleep 30", tmp_path / "status")
            assert keeper.pid is not None
            os.kill(keeper.pid, signal.SIGKILL)
            async with asyncio.timeout(5):
                assert await job.returncode is None
            os.killpg(job.pid, signal.SIGKILL)
            # The next job gets a new keeper.
            again = await spawn(keeper, "exit 3", tmp_path / "again")
            assert await again.returncode == 3
        finally:
            keeper.close()

    asyncio.run(scenario())


def test_each_job_runs_in_a_cgroup_of_its_own_removed_when_it_ends(tmp_path: Path) -> None:
    skip_without_job_cgroups()

    async def scenario() -> None:
        keeper = KeeperClient()
        try:
            job = await spawn(keeper, "sleep 0.3", tmp_path / "status")
            cgroup = await job.cgroup  # said once the keeper has left it
            assert keeper.pid is not None
            tree = f"/hodei-keeper-{keeper.pid}-{start_ticks(keeper.pid)}"
            assert cgroup.endswith(f"{tree}/job-1")
            assert cgroup.endswith(cgroup_of(job.pid))
            assert cgroup_of(keeper.pid).endswith(f"{tree}/job-2")  # the next job's
            assert cgroups.populated(cgroup)
            assert await job.returncode == 0
            assert not cgroup_exists(cgroup)  # it left nothing: the cgroup went with it
            again = await spawn(keeper, "true", tmp_path / "s2")
            assert (await again.cgroup).endswith(f"{tree}/job-2")
            await again.returncode
        finally:
            keeper.close()

    asyncio.run(scenario())


def test_turned_off_no_job_gets_a_cgroup(tmp_path: Path) -> None:
    async def scenario() -> str:
        keeper = KeeperClient(cgroups=False)
        try:
            job = await spawn(keeper, "true", tmp_path / "status")
            await job.returncode
            return await job.cgroup
        finally:
            keeper.close()

    assert asyncio.run(scenario()) == ""


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "process-group"])
def test_what_a_job_leaves_behind_is_adopted_and_reaped_by_the_keeper(
    tmp_path: Path, cgroups: bool,
) -> None:
    """A double fork (`setsid -f`) leaves a process whose parent is gone: it is re-parented
    to the keeper, which reaps it when it ends (no zombie), and stays until then."""
    orphan_pid = tmp_path / "orphan"
    go = tmp_path / "go"

    async def start() -> tuple[int, int]:
        keeper = KeeperClient(cgroups=cgroups)
        job = await spawn(keeper, f"setsid -f sh -c 'echo $$ > {orphan_pid}; "
                                  f"while [ ! -e {go} ]; do sleep 0.01; done'",
                          tmp_path / "status")
        assert await job.returncode == 0
        assert keeper.pid is not None
        keeper.close()  # as when the agent dies
        return keeper.pid, job.pid

    keeper_pid, _ = asyncio.run(start())
    wait_until(lambda: orphan_pid.exists() and orphan_pid.read_text().strip() != "",
               "the orphan to start")
    orphan = int(orphan_pid.read_text())
    wait_until(lambda: parent_of(orphan) == keeper_pid, "the keeper to adopt the orphan")
    time.sleep(0.3)
    assert alive(keeper_pid), "the keeper stays while a process it adopted runs"
    go.touch()
    wait_until(lambda: not os.path.exists(f"/proc/{orphan}"), "the orphan to be reaped")
    wait_until(lambda: not alive(keeper_pid), "the keeper to exit after it")
