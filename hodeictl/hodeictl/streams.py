"""The live streams, resumed where they stopped when they break: a job watch from its
last revision, an event stream after its last (revision, id)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import grpc

from hodei_api.v1 import events_pb2, jobs_pb2
from hodeictl.client import RECONNECT_ATTEMPTS, HodeiClient, backoff
from hodeictl.errors import Unavailable, from_rpc_error

# Streams that break with these are reopened where they stopped: the server went away (a
# restart), or it cut off a reader that fell behind.
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


async def _reconnect(
    client: HodeiClient, error: grpc.aio.AioRpcError | None, failures: int, what: str
) -> None:
    """Wait before reopening a broken stream, or raise when it should not be."""
    if error is not None and error.code() not in _RESUMABLE:
        raise from_rpc_error(error, client.address) from error
    if failures > RECONNECT_ATTEMPTS:
        if error is not None:
            raise from_rpc_error(error, client.address) from error
        raise Unavailable(f"the {what} stream from {client.address} keeps ending")
    await asyncio.sleep(backoff(failures))


async def watch_jobs(
    client: HodeiClient, wanted: jobs_pb2.JobFilter, snapshot_limit: int = 0
) -> AsyncGenerator[jobs_pb2.WatchJobsResponse, None]:
    """The jobs that match `wanted`: a snapshot, SYNCED, then changes, forever.

    A broken stream is reopened from the last revision received (once synced), so the
    changes go on where they stopped; before that, it starts again with a RESET.
    """
    revision = failures = 0
    started = synced = False
    while True:
        request = jobs_pb2.WatchJobsRequest(filter=wanted, snapshot_limit=snapshot_limit,
                                            after_revision=revision if synced else 0)
        call = client.open_job_watch(request)
        error: grpc.aio.AioRpcError | None = None
        try:
            if started and not synced:
                yield jobs_pb2.WatchJobsResponse(kind=jobs_pb2.WatchJobsResponse.KIND_RESET)
            async for message in call:
                started, failures = True, 0
                if message.kind == jobs_pb2.WatchJobsResponse.KIND_RESET:
                    synced = False
                elif message.kind == jobs_pb2.WatchJobsResponse.KIND_SYNCED:
                    synced = True
                if synced:
                    revision = max(revision, message.revision)
                yield message
        except grpc.aio.AioRpcError as exc:
            error = exc
        finally:
            call.cancel()
        failures += 1
        await _reconnect(client, error, failures, "job watch")

async def watch_events(
    client: HodeiClient, wanted: events_pb2.EventFilter, *, follow: bool, limit: int = 0
) -> AsyncGenerator[events_pb2.Event, None]:
    """The events that match `wanted`, oldest first; with `follow`, then live.

    A broken stream (the server restarting, or this reader cut off for falling behind)
    is reopened after the last (revision, id) received: no event is lost or repeated.
    """
    position = (0, 0)
    failures = 0
    while True:
        request = events_pb2.WatchEventsRequest(
            filter=wanted, follow=follow, limit=limit,
            after_revision=position[0], after_id=position[1])
        call = client.open_event_watch(request)
        error: grpc.aio.AioRpcError | None = None
        try:
            async for event in call:
                if (event.revision, event.id) <= position:
                    continue
                position, failures = (event.revision, event.id), 0
                yield event
            if not follow:
                return
        except grpc.aio.AioRpcError as exc:
            if not follow:
                raise from_rpc_error(exc, client.address) from exc
            error = exc
        finally:
            call.cancel()
        failures += 1
        await _reconnect(client, error, failures, "event")
