"""The agent's own /metrics (off by default: `--metrics-listen HOST:PORT`).

prometheus-client is imported only when asked for, so the agent still installs with
grpcio and protobuf alone. At scrape time it reports how many jobs run and what their
processes use: every process in a job's session (a job runs in a session of its own, its
first process leading it), read from /proc.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from hodei_agent.errors import ConfigError

logger = logging.getLogger(__name__)

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def session_usage(leaders: set[int], proc: str = "/proc") -> tuple[float, int]:
    """(CPU seconds, resident bytes) of the live processes whose session is led by one of
    `leaders`."""
    cpu_ticks = rss_pages = 0
    if not leaders:
        return 0.0, 0
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", "rb") as stat:
                text = stat.read().decode("ascii", "replace")
        except OSError:
            continue  # ended meanwhile
        fields = text[text.rfind(")") + 2:].split()
        # fields[0] is field 3 (state): session is field 6, utime 14, stime 15, rss 24.
        if len(fields) > 21 and int(fields[3]) in leaders:
            cpu_ticks += int(fields[11]) + int(fields[12])
            rss_pages += int(fields[21])
    return cpu_ticks / _TICKS, rss_pages * _PAGE


def serve(listen: str, job_pids: Callable[[], set[int]]) -> Callable[[], None]:
    """Serve /metrics on `listen` in a thread; returns what stops it."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.core import GaugeMetricFamily
    except ImportError:
        raise ConfigError("--metrics-listen needs prometheus-client on this host "
                          "(pip install prometheus-client)") from None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--metrics-listen {listen!r} must look like HOST:PORT")

    class JobsCollector:
        def describe(self) -> Iterator[Any]:
            return iter(())

        def collect(self) -> Iterator[Any]:
            pids = job_pids()
            cpu, rss = session_usage(pids)
            yield GaugeMetricFamily("hodei_agent_jobs_running", "Jobs running on this agent.",
                                    value=len(pids))
            yield GaugeMetricFamily("hodei_agent_jobs_cpu_seconds",
                                    "CPU time used so far by the running jobs' processes.",
                                    value=cpu)
            yield GaugeMetricFamily("hodei_agent_jobs_memory_bytes",
                                    "Resident memory of the running jobs' processes.",
                                    value=rss)

    registry = CollectorRegistry(auto_describe=True)
    registry.register(JobsCollector())  # type: ignore[arg-type]
    try:
        server, thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0",
                                           registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from exc
    logger.info("metrics on http://%s/metrics", listen)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return stop
