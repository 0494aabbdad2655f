"""Validation of everything received over the API: job specs, request fields, agent messages.

The server's checks are the rule (hodeictl's are a convenience). Every violation raises
`InvalidSpec` (INVALID_ARGUMENT) with one line naming the field and the limit; values are
quoted with `repr` and cut short, so a hostile value can't spread over lines or terminals.
Nothing received here is ever used as a path the server opens, a shell word or SQL text:
the limits below keep the values small, printable where people read them, and the
database and the agents get them as data.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping

from google.protobuf import message as pb_message
from google.protobuf import unknown_fields
from google.protobuf.timestamp_pb2 import Timestamp

from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2, workers_pb2
from hodei_plugins.secrets import SecretError, check_name
from hodei_server.errors import InvalidSpec
from hodei_server.store.states import RETRYABLE

# Job specs.
# Well under gRPC's default 4 MiB receive limit, which agents and clients keep.
MAX_SPEC_BYTES = 2 * 1024 * 1024
MAX_NAME = 253
MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024  # Linux's MAX_ARG_STRLEN
MAX_COMMAND_BYTES = 1024 * 1024  # all arguments together; ARG_MAX is 2 MiB with the env
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_INTERPRETER = 256
MAX_ENV = 1024
MAX_ENV_KEY = 256
MAX_ENV_VALUE_BYTES = 128 * 1024
MAX_ENV_BYTES = 1024 * 1024  # all variables together
MAX_WORKING_DIR_BYTES = 4096  # PATH_MAX
MAX_LABELS = 64
MAX_LABEL_KEY = 253
MAX_LABEL_VALUE = 63
MAX_CPUS = 4096.0
MAX_MEMORY_MB = 1 << 30  # 1 PiB
MAX_ATTEMPTS = 100
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600
MAX_BACKOFF_SECONDS = 24 * 3600
MAX_SECRETS = 32
SECRET_DELIVERIES = ("file", "stdin", "both")
BUILTIN_SECRET_BACKEND = "hodei"
MAX_RETRY_ON = 8
# Fan-out, dependencies, failure policy, clean-up.
MAX_COMPLETIONS = 10_000
MAX_DEPENDENCIES = 64
MAX_FAILURE_RULES = 20
MAX_EXIT_CODES = 256
MAX_TTL_SECONDS = 366 * 24 * 3600
# Other request fields.
MAX_IDEMPOTENCY_KEY = 256
MAX_REASON_BYTES = 1024
MAX_PAGE_TOKEN = 512
MAX_STATE_FILTERS = 16
MAX_ID_SHOWN = 64
# Agents.
MAX_TOKEN = 512
MAX_HOSTNAME = 253
MAX_AGENT_VERSION = 64
MAX_BATCH_MESSAGES = 4096  # an agent's batch: the stream's message size bounds it anyway
MAX_SLOTS = 4096
MAX_RUNNING_ANNOUNCED = 65536
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MAX_SEQ = 1 << 53
MAX_RESULT_REASON_BYTES = 4096
MAX_METRIC = 1e15

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")
_INTERPRETER = re.compile(r"[A-Za-z0-9_./+-]+")
_SECRET_BACKEND = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# Controls (C0, DEL, C1), format characters (bidi overrides, zero-width), line separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_OUTCOMES = frozenset({
    jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED,
    jobs_pb2.JOB_STATE_TIMED_OUT, jobs_pb2.JOB_STATE_LOST,
})
_LOG_STREAMS = frozenset({logs_pb2.LOG_STREAM_STDOUT, logs_pb2.LOG_STREAM_STDERR})
_JOB_STATES = frozenset(jobs_pb2.JobState.values())
_CONDITIONS = frozenset(jobs_pb2.DependencyCondition.values())
_FAILURE_ACTIONS = frozenset(jobs_pb2.FailureAction.values()) - {
    jobs_pb2.FAILURE_ACTION_UNSPECIFIED}


def shown(value: str, limit: int = 80) -> str:
    """`value` quoted for a one-line message: escaped by repr, cut to `limit` characters."""
    text = value if len(value) <= limit else value[: limit - 3] + "..."
    return repr(text)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _no_nul(text: str, what: str, limit: int) -> None:
    if _size(text) > limit:
        raise InvalidSpec(f"{what} is longer than {limit} bytes")
    if "\x00" in text:
        raise InvalidSpec(f"{what} contains a NUL byte")


def printable(text: str, what: str, limit: int) -> None:
    """At most `limit` bytes, and no control, format (bidi) or line-separator character."""
    _no_nul(text, what, limit)
    for ch in text:
        if unicodedata.category(ch) in _UNPRINTABLE:
            raise InvalidSpec(
                f"{what} must not contain control characters (found U+{ord(ch):04X}; "
                "C0/C1 controls, bidi and zero-width characters are refused)"
            )


def _finite(value: float, what: str, low: float, high: float, unit: str = "") -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidSpec(f"{what} must be a number between {low:g} and {high:g}{unit}")


def _integer(value: int, what: str, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidSpec(f"{what} must be between {low} and {high}")


def _uuid(value: str, what: str) -> uuid.UUID:
    if len(value) > MAX_ID_SHOWN:
        raise InvalidSpec(f"{what} {shown(value, MAX_ID_SHOWN)} is not an id (expected a UUID)")
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidSpec(f"{what} {shown(value)} is not an id (expected a UUID)") from None


def parse_job_id(value: str) -> uuid.UUID:
    """The job id as a UUID, or InvalidSpec naming what was received."""
    try:
        return _uuid(value, "job id")
    except InvalidSpec:
        raise InvalidSpec(f"{shown(value, MAX_ID_SHOWN)} is not a job id (expected a UUID)") \
            from None


def parse_worker_id(value: str) -> uuid.UUID:
    """The worker id as a UUID, or InvalidSpec naming what was received."""
    try:
        return _uuid(value, "worker id")
    except InvalidSpec:
        raise InvalidSpec(f"{shown(value, MAX_ID_SHOWN)} is not a worker id (expected a UUID)") \
            from None


def refuse_unknown_fields(msg: pb_message.Message, what: str) -> None:
    """Fields this server does not know would be stored and passed on unchecked: refuse."""
    unknown = unknown_fields.UnknownFieldSet(msg)
    if len(unknown):
        raise InvalidSpec(
            f"{what} has a field this server does not know (number {unknown[0].field_number}); "
            "is the client newer than the server?"
        )
    for field, value in msg.ListFields():
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        items = value if field.is_repeated else [value]
        for item in items:
            refuse_unknown_fields(item, f"{what}.{field.name}")


def validate_labels(labels: Mapping[str, str], what: str) -> None:
    """A k8s-like label map: at most 64 entries, `[prefix/]name` keys, short plain values."""
    if len(labels) > MAX_LABELS:
        raise InvalidSpec(f"{what}: at most {MAX_LABELS} entries")
    for key, value in labels.items():
        if len(key) > MAX_LABEL_KEY or not _LABEL_KEY.fullmatch(key):
            raise InvalidSpec(
                f"{what}: key {shown(key)} must be at most {MAX_LABEL_KEY} letters, digits, "
                "'-', '_', '.' (optionally prefixed with 'domain/'), starting and ending "
                "with a letter or digit"
            )
        if len(value) > MAX_LABEL_VALUE or not _LABEL_VALUE.fullmatch(value):
            raise InvalidSpec(
                f"{what}: value {shown(value)} of {key!r} must be at most {MAX_LABEL_VALUE} "
                "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )


def validate_spec(spec: jobs_pb2.JobSpec) -> None:
    """Raise InvalidSpec with a message saying what to fix, or return."""
    size = spec.ByteSize()
    if size > MAX_SPEC_BYTES:
        raise InvalidSpec(f"the job spec is {size} bytes; at most {MAX_SPEC_BYTES} are accepted")
    refuse_unknown_fields(spec, "spec")
    printable(spec.name, "name", MAX_NAME)
    has_command = len(spec.command) > 0
    has_script = spec.script != ""
    if has_command and has_script:
        raise InvalidSpec("give either a command or a script, not both")
    if not has_command and not has_script:
        raise InvalidSpec("nothing to run: the job needs a command or a script")
    if has_command:
        _command(spec.command)
    if has_script:
        _no_nul(spec.script, "script", MAX_SCRIPT_BYTES)
        if spec.script.strip() == "":
            raise InvalidSpec("the script is empty")
    if spec.interpreter:
        if not has_script:
            raise InvalidSpec("interpreter is only meaningful with a script")
        if len(spec.interpreter) > MAX_INTERPRETER or not _INTERPRETER.fullmatch(
                spec.interpreter):
            raise InvalidSpec(
                f"interpreter {shown(spec.interpreter)} must be a program name or path of at "
                f"most {MAX_INTERPRETER} letters, digits, '_', '.', '/', '+', '-'"
            )
    _env(spec.env)
    if spec.working_dir:
        printable(spec.working_dir, "working_dir", MAX_WORKING_DIR_BYTES)
        if not spec.working_dir.startswith("/"):
            raise InvalidSpec(
                f"working_dir {shown(spec.working_dir)} must be an absolute path"
            )
    validate_labels(spec.labels, "labels")
    validate_labels(spec.selector, "selector")
    _finite(spec.resources.cpus, "resources.cpus", 0, MAX_CPUS)
    _integer(spec.resources.memory_mb, "resources.memory_mb", 0, MAX_MEMORY_MB)
    _finite(spec.timeout_seconds, "timeout", 0, MAX_TIMEOUT_SECONDS,
            " seconds (0 means no timeout)")
    _integer(spec.max_attempts, "max_attempts", 0, MAX_ATTEMPTS)
    _retry(spec.retry)
    _secrets(spec)
    _fan_out(spec)


def split_secret_ref(ref: str) -> tuple[str, str]:
    """`NAME` -> ("hodei", NAME); `BACKEND:NAME` -> (BACKEND, NAME); InvalidSpec otherwise."""
    backend, sep, name = ref.partition(":")
    if not sep:
        backend, name = BUILTIN_SECRET_BACKEND, ref
    if not _SECRET_BACKEND.fullmatch(backend):
        raise InvalidSpec(f"secret {ref[:80]!r}: {backend[:40]!r} is not a backend name")
    try:
        check_name(name)
    except SecretError as exc:
        raise InvalidSpec(f"secret {ref[:80]!r}: {exc}") from None
    return backend, name


def _secrets(spec: jobs_pb2.JobSpec) -> None:
    if spec.secret_delivery and spec.secret_delivery not in SECRET_DELIVERIES:
        raise InvalidSpec(f"secret_delivery must be one of {', '.join(SECRET_DELIVERIES)}; "
                          f"got {spec.secret_delivery[:40]!r}")
    if len(spec.secrets) > MAX_SECRETS:
        raise InvalidSpec(f"a job may name at most {MAX_SECRETS} secrets")
    names: set[str] = set()
    files: set[str] = set()
    envs: set[str] = set()
    for ref in spec.secrets:
        _, name = split_secret_ref(ref.name)
        if ref.name in names:
            raise InvalidSpec(f"secret {ref.name!r} is named twice")
        names.add(ref.name)
        file_name = ref.as_file or name
        try:
            check_name(file_name)
        except SecretError:
            raise InvalidSpec(f"secret {ref.name!r}: as_file {ref.as_file[:80]!r} must be a "
                              "plain file name (letters, digits, '_', '.', '-')") from None
        if file_name in files:
            raise InvalidSpec(f"secret {ref.name!r}: two secrets would be the file "
                              f"{file_name!r}; give one an as_file")
        files.add(file_name)
        if ref.as_env:
            if not _ENV_KEY.fullmatch(ref.as_env) or ref.as_env.startswith("HODEI_"):
                raise InvalidSpec(f"secret {ref.name!r}: as_env {ref.as_env[:80]!r} must be a "
                                  "variable name not starting with HODEI_")
            if ref.as_env in spec.env or ref.as_env in envs:
                raise InvalidSpec(f"secret {ref.name!r}: the variable {ref.as_env!r} is "
                                  "already set")
            envs.add(ref.as_env)


def _command(command: Iterable[str]) -> None:
    args = list(command)
    if len(args) > MAX_ARGS:
        raise InvalidSpec(f"command has more than {MAX_ARGS} arguments")
    if args[0].strip() == "":
        raise InvalidSpec("the command's program name is empty")
    total = 0
    for index, arg in enumerate(args):
        _no_nul(arg, f"command argument {index}", MAX_ARG_BYTES)
        total += _size(arg) + 1
    if total > MAX_COMMAND_BYTES:
        raise InvalidSpec(f"the command's arguments add up to more than {MAX_COMMAND_BYTES} bytes")


def _env(env: Mapping[str, str]) -> None:
    if len(env) > MAX_ENV:
        raise InvalidSpec(f"env has more than {MAX_ENV} variables")
    total = 0
    for key, value in env.items():
        if len(key) > MAX_ENV_KEY or not _ENV_KEY.fullmatch(key):
            raise InvalidSpec(
                f"env: {shown(key)} is not a valid variable name (at most {MAX_ENV_KEY} "
                "letters, digits, '_'; not starting with a digit)"
            )
        if key.startswith("HODEI_"):
            raise InvalidSpec(f"env: {key!r}: names starting with HODEI_ are reserved")
        _no_nul(value, f"env {key}", MAX_ENV_VALUE_BYTES)
        total += len(key) + _size(value) + 2
    if total > MAX_ENV_BYTES:
        raise InvalidSpec(f"env adds up to more than {MAX_ENV_BYTES} bytes")


def _retry(retry: jobs_pb2.RetryPolicy) -> None:
    if len(retry.on) > MAX_RETRY_ON:
        raise InvalidSpec(f"retry.on has more than {MAX_RETRY_ON} entries")
    for ending in retry.on:
        if ending not in RETRYABLE:
            raise InvalidSpec(
                f"retry.on: {shown(ending, 40)} is not one of: {', '.join(sorted(RETRYABLE))}"
            )
    for name in ("backoff_seconds", "max_backoff_seconds"):
        _finite(getattr(retry, name), f"retry.{name}", 0, MAX_BACKOFF_SECONDS, " seconds")
    if retry.max_backoff_seconds and retry.max_backoff_seconds < retry.backoff_seconds:
        raise InvalidSpec("retry.max_backoff_seconds must be >= retry.backoff_seconds")


def _fan_out(spec: jobs_pb2.JobSpec) -> None:
    """Indexes, dependencies, failure policy and TTL."""
    _integer(spec.completions, "completions", 0, MAX_COMPLETIONS)
    _integer(spec.parallelism, "parallelism", 0, max(spec.completions, 1))
    if spec.parallelism and not spec.completions:
        raise InvalidSpec("parallelism needs completions (an indexed job)")
    if len(spec.after) > MAX_DEPENDENCIES:
        raise InvalidSpec(f"after: a job may wait for at most {MAX_DEPENDENCIES} jobs")
    waited: set[uuid.UUID] = set()
    for dep in spec.after:
        job_id = _uuid(dep.job_id, "after: job id")
        if job_id in waited:
            raise InvalidSpec(f"after: job {job_id} is named twice")
        waited.add(job_id)
        if dep.condition not in _CONDITIONS:
            raise InvalidSpec(f"after: condition {dep.condition} of job {job_id} is not "
                              "succeeded, finished or failed")
    if len(spec.failure_policy) > MAX_FAILURE_RULES:
        raise InvalidSpec(f"failure_policy: at most {MAX_FAILURE_RULES} rules")
    for index, rule in enumerate(spec.failure_policy):
        where = f"failure_policy[{index}]"
        if rule.action not in _FAILURE_ACTIONS:
            raise InvalidSpec(f"{where}: action must be fail_job, fail_index, ignore or count")
        if not rule.exit_codes or len(rule.exit_codes) > MAX_EXIT_CODES:
            raise InvalidSpec(f"{where}: exit_codes must list 1 to {MAX_EXIT_CODES} codes")
        for code in rule.exit_codes:
            _integer(code, f"{where}: exit code", 0, 255)
    if spec.HasField("ttl_after_finished_seconds"):
        _finite(spec.ttl_after_finished_seconds, "ttl_after_finished", 0, MAX_TTL_SECONDS,
                " seconds")


def validate_idempotency_key(key: str) -> None:
    printable(key, "idempotency key", MAX_IDEMPOTENCY_KEY)


def validate_reason(reason: str) -> None:
    """A cancel reason: one printable line, recorded with the job."""
    printable(reason, "reason", MAX_REASON_BYTES)


def validate_list_jobs(request: jobs_pb2.ListJobsRequest) -> None:
    if request.page_size < 0:
        raise InvalidSpec("page_size must be >= 0")
    if len(request.states) > MAX_STATE_FILTERS:
        raise InvalidSpec(f"states: at most {MAX_STATE_FILTERS} filters")
    for state in request.states:
        if state not in _JOB_STATES:
            raise InvalidSpec(f"states: {state} is not a job state this server knows")
    if len(request.page_token) > MAX_PAGE_TOKEN:
        raise InvalidSpec("page_token is not one this server issued")
    if any(5 <= field.field_number <= 8 for field in unknown_fields.UnknownFieldSet(request)):
        raise InvalidSpec("id_prefix, name, labels and created_after of ListJobs are fields of "
                          "its filter now (JobFilter); is the client older than the server?")
    refuse_unknown_fields(request, "ListJobs request")


def validate_id_prefix(prefix: str, what: str) -> None:
    """The start of a job id, as ids are shown: lower-case hex digits and dashes."""
    if prefix and not _ID_PREFIX.fullmatch(prefix):
        raise InvalidSpec(f"{what} {shown(prefix)} is not the start of a job id (lower-case "
                          "hex digits and dashes)")


def timestamp(stamp: Timestamp, what: str) -> dt.datetime:
    """A Timestamp as a UTC datetime; refused outside 1970 to 9999 (what datetime holds)."""
    if not (0 <= stamp.seconds <= 253402300799 and 0 <= stamp.nanos <= 999_999_999):
        raise InvalidSpec(f"{what} is not a time from 1970 to 9999")
    return stamp.ToDatetime(tzinfo=dt.UTC)


def validate_grace(seconds: float, limit: float) -> None:
    _finite(seconds, "grace", 0, limit, " seconds")


# ---- agents -----------------------------------------------------------------------------


def validate_capacity(capacity: workers_pb2.Capacity, what: str = "capacity") -> None:
    _integer(capacity.slots, f"{what}.slots", 1, MAX_SLOTS)
    _finite(capacity.cpus, f"{what}.cpus", 0, MAX_CPUS)
    _integer(capacity.memory_mb, f"{what}.memory_mb", 0, MAX_MEMORY_MB)


def validate_register(request: agent_pb2.RegisterRequest) -> str:
    """The worker name to record (stripped), or InvalidSpec."""
    if len(request.bootstrap_token) > MAX_TOKEN:
        raise InvalidSpec(f"bootstrap_token is longer than {MAX_TOKEN} characters")
    name = request.name.strip()
    if not name:
        raise InvalidSpec("worker name must not be empty")
    printable(name, "worker name", MAX_NAME)
    printable(request.hostname, "hostname", MAX_HOSTNAME)
    printable(request.agent_version, "agent_version", MAX_AGENT_VERSION)
    validate_labels(request.labels, "labels")
    validate_capacity(request.capacity)
    return name


def validate_hello(hello: agent_pb2.Hello) -> None:
    if len(hello.running) > MAX_RUNNING_ANNOUNCED:
        raise InvalidSpec(f"hello.running: at most {MAX_RUNNING_ANNOUNCED} entries")
    for running in hello.running:
        _uuid(running.job_id, "hello.running.job_id")
        _integer(running.attempt, "hello.running.attempt", 1, 2**31 - 1)
    validate_labels(hello.labels, "hello.labels")
    if hello.capacity.slots or hello.capacity.cpus or hello.capacity.memory_mb:
        validate_capacity(hello.capacity, "hello.capacity")
    printable(hello.agent_version, "hello.agent_version", MAX_AGENT_VERSION)


def _metrics(metrics: workers_pb2.WorkerMetrics) -> None:
    for field, value in metrics.ListFields():
        _finite(float(value), f"heartbeat.metrics.{field.name}", 0, MAX_METRIC)


def validate_agent_message(msg: agent_pb2.AgentMessage) -> str:
    """The kind of a message on an agent's stream after its Hello, or InvalidSpec."""
    kind = msg.WhichOneof("msg")
    if kind is None:
        raise InvalidSpec("agent message carries nothing this server knows")
    if kind == "log_chunk":
        chunk = msg.log_chunk
        _uuid(chunk.job_id, "log_chunk.job_id")
        _integer(chunk.attempt, "log_chunk.attempt", 1, 2**31 - 1)
        _integer(chunk.seq, "log_chunk.seq", 1, MAX_SEQ)
        if chunk.stream not in _LOG_STREAMS:
            raise InvalidSpec(f"log_chunk.stream: {chunk.stream} is not stdout (1) or stderr (2)")
        if len(chunk.data) > MAX_CHUNK_BYTES:
            raise InvalidSpec(f"log_chunk.data is longer than {MAX_CHUNK_BYTES} bytes")
    elif kind == "job_finished":
        done = msg.job_finished
        _uuid(done.job_id, "job_finished.job_id")
        _integer(done.attempt, "job_finished.attempt", 1, 2**31 - 1)
        if done.outcome not in _OUTCOMES:
            name = jobs_pb2.JobState.Name(done.outcome) if done.outcome in _JOB_STATES \
                else str(done.outcome)
            raise InvalidSpec(f"job_finished.outcome: {name} is not a final outcome "
                              "(SUCCEEDED, FAILED, CANCELLED, TIMED_OUT or LOST)")
        if done.has_exit_code:
            _integer(done.exit_code, "job_finished.exit_code", 0, 255)
        _integer(done.last_seq, "job_finished.last_seq", 0, MAX_SEQ)
        _no_nul(done.reason, "job_finished.reason", MAX_RESULT_REASON_BYTES)
    elif kind == "job_accepted":
        accepted = msg.job_accepted
        _uuid(accepted.job_id, "job_accepted.job_id")
        _integer(accepted.attempt, "job_accepted.attempt", 1, 2**31 - 1)
        _integer(accepted.pid, "job_accepted.pid", 0, 2**31 - 1)
    elif kind == "heartbeat":
        _integer(msg.heartbeat.running_jobs, "heartbeat.running_jobs", 0, MAX_SLOTS)
        _metrics(msg.heartbeat.metrics)
    elif kind == "hello":
        validate_hello(msg.hello)
    elif kind == "batch":
        inner = msg.batch.messages
        if not inner:
            raise InvalidSpec("batch: empty")
        if len(inner) > MAX_BATCH_MESSAGES:
            raise InvalidSpec(f"batch: more than {MAX_BATCH_MESSAGES} messages")
        for index, message in enumerate(inner):
            if message.WhichOneof("msg") in ("batch", "hello"):
                raise InvalidSpec(f"batch.messages[{index}]: a batch holds no "
                                  f"{message.WhichOneof('msg')}")
            validate_agent_message(message)
    return kind
