"""Provisioning counts only the pending jobs a provider's workers could take."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hodei_plugins.docker.provider import DockerProviderConfig
from hodei_plugins.local.provider import LocalProviderConfig
from hodei_server.dispatch.provisioning import ProviderRuntime


def runtime(config: Any) -> ProviderRuntime:
    return ProviderRuntime(SimpleNamespace(config=config))  # type: ignore[arg-type]


def job(cpus: float = 0, memory_mb: int = 0, **selector: str) -> dict[str, object]:
    return {"selector": selector, "cpus": cpus, "memory_mb": memory_mb}


def test_demand_follows_labels() -> None:
    local = runtime(LocalProviderConfig(name="local", labels={"zone": "a"}))
    pending = [job(), job(zone="a"), job(zone="b"), job(provider="local"), job(provider="x")]
    assert local._demand(pending) == 3


def test_demand_skips_jobs_bigger_than_a_worker() -> None:
    docker = runtime(DockerProviderConfig(name="d", cpus=1.0, memory_mb=512))
    pending = [job(cpus=0.5, memory_mb=256), job(cpus=2), job(memory_mb=1024), job()]
    assert docker._demand(pending) == 2
