"""Where the CPU goes per job: N `true` jobs through 2 agents x 4 slots on the embedded
stack, with the CPU time each part of the stack used meanwhile, per job.

The throughput goal is a CPU budget: on 2 cores, 300 jobs/s leaves 6.7 ms of CPU per job
for everything (server, PostgreSQL, agents, the jobs' processes and the client submitting
them). This prints how that budget is spent, read from /proc (Linux only).

The jobs' own processes (`true`, reaped by the agents' keepers) are the same-run reference:
the cost of the job itself.

Usage: python benchmarks/bench_cpu_per_job.py [JOBS] [--batch]
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path
from typing import cast

from bench_throughput import run_true_jobs
from reference import measure
from stack import embedded_stack

TICKS = os.sysconf("SC_CLK_TCK")
PARTS = (
    ("hodei_server", "server"),
    ("hodei_agent.watchdog", "agent watchdogs"),
    ("hodei_agent.keeper", "job keepers"),
    ("hodei_agent", "agents"),
    ("postgres", "PostgreSQL"),
    ("bench_cpu_per_job", "client (this script)"),
)


def part_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if pid == os.getpid():
        return "client (this script)"
    for needle, part in PARTS:
        if needle in cmdline:
            return part
    return "rest of the machine"


def cpu_times() -> dict[int, tuple[str, int, int]]:
    """pid -> (part, own ticks, ticks of its reaped children)."""
    times = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        times[int(entry)] = (part_of(int(entry)), int(fields[11]) + int(fields[12]),
                             int(fields[13]) + int(fields[14]))
    return times


def machine_busy() -> int:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 1000
    start: dict[str, object] = {}

    def snapshot() -> None:
        start.update(times=cpu_times(), busy=machine_busy())

    with embedded_stack() as stack:
        elapsed = run_true_jobs(stack, count, on_start=snapshot,
                                batch="--batch" in sys.argv).elapsed
        after, busy_after = cpu_times(), machine_busy()
    before = cast(dict[int, tuple[str, int, int]], start["times"])
    busy_before = cast(int, start["busy"])
    used: collections.Counter[str] = collections.Counter()
    for pid, (part, own, children) in after.items():
        own_before, children_before = before.get(pid, (part, 0, 0))[1:]
        used[part] += own - own_before
        if part in ("agents", "job keepers"):  # what they reaped: the jobs' processes
            used["jobs' processes"] += children - children_before
    busy = (busy_after - busy_before) / TICKS
    print(f"{count} jobs in {elapsed:.2f} s ({count / elapsed:.0f} jobs/s); the machine was "
          f"busy {busy:.2f} CPU-s: {busy / count * 1000:.2f} ms of CPU per job")
    for part, ticks in used.most_common():
        if ticks > 0:
            print(f"  {part:24s} {ticks / TICKS / count * 1000:5.2f} ms/job")
    job = used["jobs' processes"] / TICKS / count * 1000
    stack = sum(t for part, t in used.items() if part != "rest of the machine") / TICKS
    platform = stack / count * 1000 - job
    if job > 0:
        print(f"  the stack (all but the rest of the machine): {stack / count * 1000:.2f} ms/job;"
              f" the platform's own part {platform:.2f} ms/job, {platform / job:.1f} x the job "
              f"itself ({job:.2f} ms)")
    print(f"  {measure().describe()}")


if __name__ == "__main__":
    main()
