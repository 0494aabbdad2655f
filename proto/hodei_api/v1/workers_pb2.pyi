import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_PROVISIONING: _ClassVar[WorkerState]
    WORKER_STATE_READY: _ClassVar[WorkerState]
    WORKER_STATE_BUSY: _ClassVar[WorkerState]
    WORKER_STATE_DRAINING: _ClassVar[WorkerState]
    WORKER_STATE_TERMINATED: _ClassVar[WorkerState]
    WORKER_STATE_LOST: _ClassVar[WorkerState]
    WORKER_STATE_DISCONNECTED: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_PROVISIONING: WorkerState
WORKER_STATE_READY: WorkerState
WORKER_STATE_BUSY: WorkerState
WORKER_STATE_DRAINING: WorkerState
WORKER_STATE_TERMINATED: WorkerState
WORKER_STATE_LOST: WorkerState
WORKER_STATE_DISCONNECTED: WorkerState

class Capacity(_message.Message):
    __slots__ = ("slots", "cpus", "memory_mb")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    slots: int
    cpus: float
    memory_mb: int
    def __init__(self, slots: _Optional[int] = ..., cpus: _Optional[float] = ..., memory_mb: _Optional[int] = ...) -> None: ...

class WorkerMetrics(_message.Message):
    __slots__ = ("cpu_percent", "memory_total_mb", "memory_available_mb", "disk_free_mb", "load_average")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_MB_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    memory_total_mb: int
    memory_available_mb: int
    disk_free_mb: int
    load_average: float
    def __init__(self, cpu_percent: _Optional[float] = ..., memory_total_mb: _Optional[int] = ..., memory_available_mb: _Optional[int] = ..., disk_free_mb: _Optional[int] = ..., load_average: _Optional[float] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("id", "name", "state", "hostname", "labels", "capacity", "running_jobs", "metrics", "provider", "registered_at", "last_heartbeat_at", "agent_version")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    state: WorkerState
    hostname: str
    labels: _containers.ScalarMap[str, str]
    capacity: Capacity
    running_jobs: int
    metrics: WorkerMetrics
    provider: str
    registered_at: _timestamp_pb2.Timestamp
    last_heartbeat_at: _timestamp_pb2.Timestamp
    agent_version: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[_Union[Capacity, _Mapping]] = ..., running_jobs: _Optional[int] = ..., metrics: _Optional[_Union[WorkerMetrics, _Mapping]] = ..., provider: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class DrainWorkerRequest(_message.Message):
    __slots__ = ("id", "grace_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    grace_seconds: float
    def __init__(self, id: _Optional[str] = ..., grace_seconds: _Optional[float] = ...) -> None: ...

class DrainWorkerResponse(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: Worker
    def __init__(self, worker: _Optional[_Union[Worker, _Mapping]] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderStatus(_message.Message):
    __slots__ = ("name", "type", "min_workers", "max_workers", "slots_per_worker", "ephemeral", "strategy", "workers", "starting", "slots_total", "slots_used", "healthy", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKERS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    STARTING_FIELD_NUMBER: _ClassVar[int]
    SLOTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SLOTS_USED_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    min_workers: int
    max_workers: int
    slots_per_worker: int
    ephemeral: bool
    strategy: str
    workers: int
    starting: int
    slots_total: int
    slots_used: int
    healthy: bool
    error: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., min_workers: _Optional[int] = ..., max_workers: _Optional[int] = ..., slots_per_worker: _Optional[int] = ..., ephemeral: _Optional[bool] = ..., strategy: _Optional[str] = ..., workers: _Optional[int] = ..., starting: _Optional[int] = ..., slots_total: _Optional[int] = ..., slots_used: _Optional[int] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderStatus]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderStatus, _Mapping]]] = ...) -> None: ...

class WatchWorkersRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class WatchWorkersResponse(_message.Message):
    __slots__ = ("kind", "worker")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchWorkersResponse.Kind]
        KIND_SNAPSHOT: _ClassVar[WatchWorkersResponse.Kind]
        KIND_SYNCED: _ClassVar[WatchWorkersResponse.Kind]
        KIND_UPSERT: _ClassVar[WatchWorkersResponse.Kind]
        KIND_REMOVED: _ClassVar[WatchWorkersResponse.Kind]
        KIND_RESET: _ClassVar[WatchWorkersResponse.Kind]
    KIND_UNSPECIFIED: WatchWorkersResponse.Kind
    KIND_SNAPSHOT: WatchWorkersResponse.Kind
    KIND_SYNCED: WatchWorkersResponse.Kind
    KIND_UPSERT: WatchWorkersResponse.Kind
    KIND_REMOVED: WatchWorkersResponse.Kind
    KIND_RESET: WatchWorkersResponse.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    kind: WatchWorkersResponse.Kind
    worker: Worker
    def __init__(self, kind: _Optional[_Union[WatchWorkersResponse.Kind, str]] = ..., worker: _Optional[_Union[Worker, _Mapping]] = ...) -> None: ...
