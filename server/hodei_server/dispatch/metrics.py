"""Serving the server's metrics: the database collector, the leader's observer of job
timings, and the HTTP endpoint (see hodei_server.telemetry for the kinds of metrics)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hodei_server.dispatch.feeds import EventBatch, EventHub, Mailbox
from hodei_server.errors import ConfigError
from hodei_server.store.db import Pool
from hodei_server.store.events import EventStore, Position
from hodei_server.telemetry import QUEUE_WAIT, REGISTRY, RUN_TIME, SUBMIT_TO_START

log = logging.getLogger(__name__)

_FINAL_EVENTS = {"job.succeeded": "succeeded", "job.failed": "failed",
                 "job.timed_out": "timed_out", "job.cancelled": "cancelled",
                 "job.lost": "lost", "job.retry_scheduled": "retried"}
SCRAPE_TIMEOUT = 5.0


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time (on the leader), and this replica's
    leadership and pool use."""

    def __init__(self, pool: Pool, store: EventStore, loop: asyncio.AbstractEventLoop,
                 is_leader: Callable[[], bool]) -> None:
        self.pool = pool
        self.store = store
        self.loop = loop
        self.is_leader = is_leader

    def describe(self) -> Iterator[Metric]:
        """Nothing: registering must not read the database (the registry would call
        collect() instead, from the event loop's own thread)."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        leader = self.is_leader()
        yield GaugeMetricFamily("hodei_reconciler_leader",
                                "1 on the replica that leads (and reports the database "
                                "gauges).", value=1.0 if leader else 0.0)
        stats = self.pool.get_stats()
        yield GaugeMetricFamily("hodei_db_pool_size", "Connections open in this replica's pool.",
                                value=stats.get("pool_size", 0))
        yield GaugeMetricFamily("hodei_db_pool_available", "Idle connections in the pool.",
                                value=stats.get("pool_available", 0))
        yield GaugeMetricFamily("hodei_db_pool_waiting", "Requests waiting for a connection.",
                                value=stats.get("requests_waiting", 0))
        if not leader:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self.store.fleet_figures(), self.loop)
            figures = future.result(timeout=SCRAPE_TIMEOUT)
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: could not read the database (%s)", exc)
            return
        yield from _families(figures)


def _families(figures: dict[str, list[dict[str, Any]]]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("hodei_jobs", "Jobs by state and provider (of their worker).",
                             labels=["state", "provider"])
    for row in figures["jobs"]:
        jobs.add_metric([row["state"].lower(), row["provider"]], row["count"])
    yield jobs
    workers = GaugeMetricFamily("hodei_workers", "Workers by state and provider.",
                                labels=["state", "provider"])
    slots = GaugeMetricFamily("hodei_slots", "Job slots of live workers, by provider.",
                              labels=["provider"])
    used = GaugeMetricFamily("hodei_slots_in_use", "Slots running jobs, by provider.",
                             labels=["provider"])
    for row in figures["workers"]:
        workers.add_metric([row["state"].lower(), row["provider"]], row["count"])
    for row in figures["slots"]:
        slots.add_metric([row["provider"]], row["slots"])
        used.add_metric([row["provider"]], row["used"])
    yield workers
    yield slots
    yield used
    cpu = GaugeMetricFamily("hodei_worker_cpu_percent", "CPU use of a live worker's host.",
                            labels=["worker", "provider"])
    memory = GaugeMetricFamily("hodei_worker_memory_available_mb",
                               "Memory available on a live worker's host.",
                               labels=["worker", "provider"])
    for row in figures["load"]:
        cpu.add_metric([row["name"], row["provider"]], row["cpu_percent"])
        memory.add_metric([row["name"], row["provider"]], row["memory_available_mb"])
    yield cpu
    yield memory


class TransitionObserver:
    """Observes the job histograms from the event feed, while this replica leads."""

    def __init__(self, hub: EventHub, is_leader: Callable[[], bool]) -> None:
        self.hub = hub
        self.is_leader = is_leader

    async def run(self, stop: asyncio.Event) -> None:
        async def start(position: Position) -> None:
            return None

        mailbox: Mailbox[EventBatch] | None = None
        try:
            while not stop.is_set():
                if not self.is_leader():
                    if mailbox is not None:
                        self.hub.leave(mailbox)
                        mailbox = None
                    # Look again soon: what happens between a leader's start and its
                    # joining the feed goes unobserved.
                    await _sleep(stop, 0.1)
                    continue
                if mailbox is None or mailbox.behind:
                    if mailbox is not None:
                        self.hub.leave(mailbox)
                        log.warning("metrics: fell behind the event feed; some job timings "
                                    "were not observed")
                    # At the resync pace: timings need no haste, and writers then owe
                    # it no notification.
                    mailbox, _ = await self.hub.join(start, jobs=True, live=False)
                try:
                    batches = await asyncio.wait_for(mailbox.take(), timeout=1.0)
                except TimeoutError:
                    continue
                for batch in batches:
                    observe(batch)
        finally:
            if mailbox is not None:
                self.hub.leave(mailbox)


def observe(batch: EventBatch) -> None:
    """Each job transition of `batch`, into the histograms."""
    for event in batch.events:
        if event["aggregate_type"] != "job":
            continue
        job = batch.jobs.get(event["aggregate_id"])
        if job is None:
            continue
        at = event["created_at"]
        if event["type"] == "job.assigned":
            # A first attempt was runnable once submitted; a retry once due (not_before,
            # unless the row has moved on since: then that wait is not known any more).
            first = (event["payload"] or {}).get("attempt", 1) == 1
            runnable = job["created_at"] if first else job["not_before"]
            if at >= runnable:
                QUEUE_WAIT.observe((at - runnable).total_seconds())
        elif event["type"] == "job.running":
            SUBMIT_TO_START.observe(max(0.0, (at - job["created_at"]).total_seconds()))
        elif event["type"] in _FINAL_EVENTS and job["started_at"] is not None:
            if at >= job["started_at"]:
                RUN_TIME.labels(_FINAL_EVENTS[event["type"]]).observe(
                    (at - job["started_at"]).total_seconds())


def serve_metrics(listen: str, collector: DatabaseCollector) -> Callable[[], None]:
    """Serve /metrics on `listen` (HOST:PORT) in a thread; returns what stops it."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics_listen {listen!r} must look like HOST:PORT "
                          "(e.g. 127.0.0.1:9464)")
    try:
        REGISTRY.register(collector)
    except ValueError:  # a second replica in this process: the first one's is reported
        pass
    try:
        server, thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0",
                                           registry=REGISTRY)
    except OSError as exc:
        REGISTRY.unregister(collector)
        raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror or exc}; "
                          "choose another metrics_listen") from exc
    log.info("metrics on http://%s/metrics", listen)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)
        try:
            REGISTRY.unregister(collector)
        except KeyError:
            pass

    return stop


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
