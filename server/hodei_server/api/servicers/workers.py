"""WorkerService: what workers exist and how they are doing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from hodei_api.v1 import workers_pb2, workers_pb2_grpc
from hodei_server.api.convert import worker_to_proto
from hodei_server.api.servicers.watch import watch_workers
from hodei_server.api.status import streaming, unary
from hodei_server.dispatch.feeds import WorkerHub
from hodei_server.dispatch.provisioning import ProviderRuntime
from hodei_server.dispatch.registry import AgentRegistry
from hodei_server.errors import Conflict
from hodei_server.security.authz import principal
from hodei_server.store.workers import WorkerStore
from hodei_server.validation import parse_worker_id, validate_grace

MAX_DRAIN_GRACE = 24 * 3600.0


class WorkerServicer(workers_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self, workers: WorkerStore, registry: AgentRegistry, providers: list[ProviderRuntime],
        server_id: str = "", feed: WorkerHub | None = None,
    ) -> None:
        self.workers = workers
        self.feed = feed
        self.registry = registry
        self.providers = providers
        self.server_id = server_id

    @unary
    async def ListProviders(
        self, request: workers_pb2.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> workers_pb2.ListProvidersResponse:
        return workers_pb2.ListProvidersResponse(
            providers=[runtime.status(self.registry) for runtime in self.providers]
        )

    @unary
    async def DrainWorker(
        self, request: workers_pb2.DrainWorkerRequest, context: grpc.aio.ServicerContext
    ) -> workers_pb2.DrainWorkerResponse:
        worker_id = parse_worker_id(request.id)
        validate_grace(request.grace_seconds, MAX_DRAIN_GRACE)
        row, signal = await self.workers.drain(worker_id, request.grace_seconds,
                                               principal().actor, self.server_id)
        self.registry.deliver(signal)  # if its stream is here; other replicas hear it
        return workers_pb2.DrainWorkerResponse(worker=worker_to_proto(row))

    @unary
    async def ListWorkers(
        self, request: workers_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> workers_pb2.ListWorkersResponse:
        rows = await self.workers.list_workers(request.all)
        return workers_pb2.ListWorkersResponse(workers=[worker_to_proto(r) for r in rows])

    @streaming
    async def WatchWorkers(
        self, request: workers_pb2.WatchWorkersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[workers_pb2.WatchWorkersResponse]:
        if self.feed is None:
            raise Conflict("this server does not watch workers")
        async for message in watch_workers(self.feed, request):
            yield message
