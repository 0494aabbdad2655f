import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hodei_api.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParameterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAMETER_TYPE_UNSPECIFIED: _ClassVar[ParameterType]
    PARAMETER_TYPE_STRING: _ClassVar[ParameterType]
    PARAMETER_TYPE_INTEGER: _ClassVar[ParameterType]
    PARAMETER_TYPE_NUMBER: _ClassVar[ParameterType]
    PARAMETER_TYPE_BOOLEAN: _ClassVar[ParameterType]

class ConcurrencyPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONCURRENCY_POLICY_UNSPECIFIED: _ClassVar[ConcurrencyPolicy]
    CONCURRENCY_POLICY_ALLOW: _ClassVar[ConcurrencyPolicy]
    CONCURRENCY_POLICY_FORBID: _ClassVar[ConcurrencyPolicy]
    CONCURRENCY_POLICY_REPLACE: _ClassVar[ConcurrencyPolicy]
PARAMETER_TYPE_UNSPECIFIED: ParameterType
PARAMETER_TYPE_STRING: ParameterType
PARAMETER_TYPE_INTEGER: ParameterType
PARAMETER_TYPE_NUMBER: ParameterType
PARAMETER_TYPE_BOOLEAN: ParameterType
CONCURRENCY_POLICY_UNSPECIFIED: ConcurrencyPolicy
CONCURRENCY_POLICY_ALLOW: ConcurrencyPolicy
CONCURRENCY_POLICY_FORBID: ConcurrencyPolicy
CONCURRENCY_POLICY_REPLACE: ConcurrencyPolicy

class TemplateParameter(_message.Message):
    __slots__ = ("name", "type", "required", "default", "description", "choices")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ParameterType
    required: bool
    default: str
    description: str
    choices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ParameterType, str]] = ..., required: _Optional[bool] = ..., default: _Optional[str] = ..., description: _Optional[str] = ..., choices: _Optional[_Iterable[str]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("cron", "timezone", "starting_deadline_seconds", "concurrency")
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    STARTING_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    cron: str
    timezone: str
    starting_deadline_seconds: float
    concurrency: ConcurrencyPolicy
    def __init__(self, cron: _Optional[str] = ..., timezone: _Optional[str] = ..., starting_deadline_seconds: _Optional[float] = ..., concurrency: _Optional[_Union[ConcurrencyPolicy, str]] = ...) -> None: ...

class HistoryLimits(_message.Message):
    __slots__ = ("succeeded", "failed")
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    succeeded: int
    failed: int
    def __init__(self, succeeded: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class TemplateSpec(_message.Message):
    __slots__ = ("name", "description", "job", "parameters", "schedule", "history")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    job: _jobs_pb2.JobSpec
    parameters: _containers.RepeatedCompositeFieldContainer[TemplateParameter]
    schedule: Schedule
    history: HistoryLimits
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., job: _Optional[_Union[_jobs_pb2.JobSpec, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[TemplateParameter, _Mapping]]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., history: _Optional[_Union[HistoryLimits, _Mapping]] = ...) -> None: ...

class TemplateStats(_message.Message):
    __slots__ = ("runs", "succeeded", "failed", "active", "success_rate", "p50_seconds", "p95_seconds", "last_state", "last_job_id", "last_finished_at")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P95_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    runs: int
    succeeded: int
    failed: int
    active: int
    success_rate: float
    p50_seconds: float
    p95_seconds: float
    last_state: _jobs_pb2.JobState
    last_job_id: str
    last_finished_at: _timestamp_pb2.Timestamp
    def __init__(self, runs: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., active: _Optional[int] = ..., success_rate: _Optional[float] = ..., p50_seconds: _Optional[float] = ..., p95_seconds: _Optional[float] = ..., last_state: _Optional[_Union[_jobs_pb2.JobState, str]] = ..., last_job_id: _Optional[str] = ..., last_finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TemplateRunSummary(_message.Message):
    __slots__ = ("job_id", "version", "state", "parameters", "scheduled_at", "created_at", "started_at", "finished_at", "submitted_by")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    version: int
    state: _jobs_pb2.JobState
    parameters: _containers.ScalarMap[str, str]
    scheduled_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    submitted_by: str
    def __init__(self, job_id: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[_jobs_pb2.JobState, str]] = ..., parameters: _Optional[_Mapping[str, str]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submitted_by: _Optional[str] = ...) -> None: ...

class ScheduleStatus(_message.Message):
    __slots__ = ("template", "cron", "timezone", "concurrency", "suspended", "template_disabled", "next_run_at", "last_scheduled_at", "last_job_id", "last_state", "started", "missed", "skipped", "last_missed_at", "last_missed_reason", "starting_deadline_seconds")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_DISABLED_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_MISSED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_MISSED_REASON_FIELD_NUMBER: _ClassVar[int]
    STARTING_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    template: str
    cron: str
    timezone: str
    concurrency: ConcurrencyPolicy
    suspended: bool
    template_disabled: bool
    next_run_at: _timestamp_pb2.Timestamp
    last_scheduled_at: _timestamp_pb2.Timestamp
    last_job_id: str
    last_state: _jobs_pb2.JobState
    started: int
    missed: int
    skipped: int
    last_missed_at: _timestamp_pb2.Timestamp
    last_missed_reason: str
    starting_deadline_seconds: float
    def __init__(self, template: _Optional[str] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., concurrency: _Optional[_Union[ConcurrencyPolicy, str]] = ..., suspended: _Optional[bool] = ..., template_disabled: _Optional[bool] = ..., next_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_id: _Optional[str] = ..., last_state: _Optional[_Union[_jobs_pb2.JobState, str]] = ..., started: _Optional[int] = ..., missed: _Optional[int] = ..., skipped: _Optional[int] = ..., last_missed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_missed_reason: _Optional[str] = ..., starting_deadline_seconds: _Optional[float] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "version", "latest_version", "disabled", "spec", "created_at", "updated_at", "updated_by", "stats", "schedule", "recent_runs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    RECENT_RUNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    latest_version: int
    disabled: bool
    spec: TemplateSpec
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    updated_by: str
    stats: TemplateStats
    schedule: ScheduleStatus
    recent_runs: _containers.RepeatedCompositeFieldContainer[TemplateRunSummary]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., latest_version: _Optional[int] = ..., disabled: _Optional[bool] = ..., spec: _Optional[_Union[TemplateSpec, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ..., stats: _Optional[_Union[TemplateStats, _Mapping]] = ..., schedule: _Optional[_Union[ScheduleStatus, _Mapping]] = ..., recent_runs: _Optional[_Iterable[_Union[TemplateRunSummary, _Mapping]]] = ...) -> None: ...

class CreateTemplateRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TemplateSpec
    def __init__(self, spec: _Optional[_Union[TemplateSpec, _Mapping]] = ...) -> None: ...

class UpdateTemplateRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TemplateSpec
    def __init__(self, spec: _Optional[_Union[TemplateSpec, _Mapping]] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("name", "version", "runs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    runs: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., runs: _Optional[int] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ...) -> None: ...

class TemplateNameRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTemplateResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class RunTemplateRequest(_message.Message):
    __slots__ = ("name", "parameters", "version", "idempotency_key")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: _containers.ScalarMap[str, str]
    version: int
    idempotency_key: str
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RunTemplateResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: _jobs_pb2.Job
    created: bool
    def __init__(self, job: _Optional[_Union[_jobs_pb2.Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[ScheduleStatus]
    def __init__(self, schedules: _Optional[_Iterable[_Union[ScheduleStatus, _Mapping]]] = ...) -> None: ...

class ScheduleRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: str
    def __init__(self, template: _Optional[str] = ...) -> None: ...
