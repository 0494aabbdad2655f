"""Host capacity and load figures read from /proc and the file system (no psutil)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from hodei_api.v1 import workers_pb2

logger = logging.getLogger(__name__)

_PROC_STAT = Path("/proc/stat")
_PROC_MEMINFO = Path("/proc/meminfo")


def detect_cpus() -> float:
    """CPUs this process may run on (its affinity mask, which honours cpusets)."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


def read_meminfo() -> dict[str, int]:
    """/proc/meminfo as {field: kibibytes}; empty where /proc is missing."""
    fields: dict[str, int] = {}
    try:
        text = _PROC_MEMINFO.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    return fields


def detect_memory_mb() -> int:
    """Total memory of the host in MiB (0 when unknown)."""
    return read_meminfo().get("MemTotal", 0) // 1024


def _read_cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all CPUs, or None where /proc is missing."""
    try:
        with _PROC_STAT.open() as stat:
            first = stat.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(v) for v in first[1:]]
    # user nice system idle iowait irq softirq steal; guest times are already in user/nice.
    counted = values[:8]
    idle = sum(counted[3:5])
    total = sum(counted)
    return total - idle, total


class MetricsSampler:
    """Produces `WorkerMetrics`; CPU usage is measured between consecutive samples."""

    def __init__(self, disk_path: str | None = None) -> None:
        self._disk_path = disk_path or tempfile.gettempdir()
        self._last_cpu = _read_cpu_times()

    def sample(self) -> workers_pb2.WorkerMetrics:
        """Current figures; never raises, reporting 0 for anything it cannot read."""
        meminfo = read_meminfo()
        return workers_pb2.WorkerMetrics(
            cpu_percent=self._cpu_percent(),
            memory_total_mb=meminfo.get("MemTotal", 0) // 1024,
            memory_available_mb=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)) // 1024,
            disk_free_mb=self._disk_free_mb(),
            load_average=self._load_average(),
        )

    def _cpu_percent(self) -> float:
        now = _read_cpu_times()
        previous, self._last_cpu = self._last_cpu, now
        if now is None or previous is None:
            return 0.0
        busy = now[0] - previous[0]
        total = now[1] - previous[1]
        if total <= 0:
            return 0.0
        return round(100.0 * busy / total, 1)

    def _disk_free_mb(self) -> int:
        try:
            stat = os.statvfs(self._disk_path)
        except OSError:
            logger.debug("cannot statvfs %s", self._disk_path, exc_info=True)
            return 0
        return stat.f_bavail * stat.f_frsize // (1024 * 1024)

    @staticmethod
    def _load_average() -> float:
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0
