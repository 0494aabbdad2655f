"""The keeper's spawn path: N `true` jobs through one keeper, each in a cgroup of its own and
in its process group only, in alternating rounds (the same-run reference for what the cgroup
costs: making it, moving the keeper on to the next one after each spawn, removing it).

Prints, per job, the wall time from request to exit report and the CPU the keeper used
(Linux; cgroups only where cgroup v2 is writable).

Usage: python benchmarks/bench_spawn.py [JOBS] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hodei_agent.keeperclient import KeeperClient

TICKS = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 4  # an agent's default slots


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def one_round(cgroups: bool, jobs: int, status_dir: str) -> tuple[float, float, bool]:
    """(wall ms per job, keeper CPU ms per job, whether jobs got cgroups)."""
    keeper = KeeperClient(cgroups=cgroups)
    out = os.open(os.devnull, os.O_WRONLY)
    gate = asyncio.Semaphore(CONCURRENCY)
    contained = False

    async def run(n: int) -> None:
        nonlocal contained
        async with gate:
            kept = await keeper.spawn(["true"], {"PATH": os.defpath}, "/",
                                      (keeper.devnull, out, out), f"{status_dir}/{n}")
            contained = contained or bool(await kept.cgroup)
            await kept.returncode

    try:
        await run(-1)  # the keeper's start-up is not what is measured
        assert keeper.pid is not None
        cpu_before, started = cpu_seconds(keeper.pid), time.perf_counter()
        await asyncio.gather(*(run(n) for n in range(jobs)))
        wall, cpu = time.perf_counter() - started, cpu_seconds(keeper.pid) - cpu_before
    finally:
        os.close(out)
        keeper.close()
    return wall / jobs * 1000, cpu / jobs * 1000, contained


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    contained = False
    with tempfile.TemporaryDirectory() as status_dir:
        for _ in range(rounds):
            for cgroups in (True, False):
                wall, cpu, got = asyncio.run(one_round(cgroups, jobs, status_dir))
                contained = contained or got
                results[cgroups].append((wall, cpu))
    for cgroups, label in ((True, "a cgroup per job"), (False, "process group only")):
        if cgroups and not contained:
            label += " (cgroup v2 not writable here: none made)"
        walls = [wall for wall, _ in results[cgroups]]
        cpus = [cpu for _, cpu in results[cgroups]]
        print(f"{label:20s} {statistics.median(walls):.3f} ms/job wall, keeper CPU "
              f"{statistics.median(cpus):.3f} ms/job (median of {rounds} rounds of {jobs}; "
              f"CPU {min(cpus):.3f}-{max(cpus):.3f})")


if __name__ == "__main__":
    main()
