"""WorkerService: what workers exist and how they are doing."""

from __future__ import annotations

import grpc

from hodei_api.v1 import workers_pb2, workers_pb2_grpc
from hodei_server.convert import worker_to_proto
from hodei_server.servicers.common import unary
from hodei_server.workerstore import WorkerStore


class WorkerServicer(workers_pb2_grpc.WorkerServiceServicer):
    def __init__(self, workers: WorkerStore) -> None:
        self.workers = workers

    @unary
    async def ListWorkers(
        self, request: workers_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> workers_pb2.ListWorkersResponse:
        rows = await self.workers.list_workers(request.all)
        return workers_pb2.ListWorkersResponse(workers=[worker_to_proto(r) for r in rows])
