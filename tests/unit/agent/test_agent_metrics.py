"""Host figures read from /proc and statvfs."""

from __future__ import annotations

import sys
import time

import pytest

from hodei_agent.metrics import MetricsSampler, detect_cpus, detect_memory_mb

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_sample_is_plausible() -> None:
    sampler = MetricsSampler()
    end = time.monotonic() + 0.2
    while time.monotonic() < end:  # some CPU work between the two readings
        pass
    metrics = sampler.sample()
    assert 0.0 <= metrics.cpu_percent <= 100.0
    assert 0 < metrics.memory_available_mb <= metrics.memory_total_mb
    assert metrics.disk_free_mb > 0
    assert metrics.load_average >= 0.0


@linux_only
def test_host_capacity() -> None:
    assert detect_cpus() >= 1
    assert detect_memory_mb() > 0


def test_missing_disk_path_reports_zero() -> None:
    assert MetricsSampler(disk_path="/nonexistent/hodei").sample().disk_free_mb == 0
