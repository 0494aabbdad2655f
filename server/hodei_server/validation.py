"""Validation of job specs and identifiers received over the API."""

from __future__ import annotations

import math
import re
import uuid

from hodei_api.v1 import jobs_pb2
from hodei_plugins.secrets import SecretError, check_name
from hodei_server.errors import InvalidSpec
from hodei_server.states import RETRYABLE

MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_ENV = 1024
MAX_ENV_VALUE_BYTES = 128 * 1024
MAX_LABELS = 64
MAX_NAME = 253
MAX_ATTEMPTS = 100
MAX_TIMEOUT_SECONDS = 366 * 24 * 3600
MAX_BACKOFF_SECONDS = 24 * 3600
MAX_SECRETS = 32
SECRET_DELIVERIES = ("file", "stdin", "both")
BUILTIN_SECRET_BACKEND = "hodei"

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_INTERPRETER = re.compile(r"[A-Za-z0-9_./+-]+")
_SECRET_BACKEND = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def parse_job_id(value: str) -> uuid.UUID:
    """The job id as a UUID, or InvalidSpec naming what was received."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise InvalidSpec(f"{shown!r} is not a job id (expected a UUID)") from None


def _printable(text: str, what: str, limit: int) -> None:
    if len(text.encode()) > limit:
        raise InvalidSpec(f"{what} is longer than {limit} bytes")
    if "\x00" in text:
        raise InvalidSpec(f"{what} contains a NUL byte")


def validate_labels(labels: dict[str, str], what: str) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidSpec(f"{what}: at most {MAX_LABELS} entries")
    for key, value in labels.items():
        if len(key) > 253 or not _LABEL_KEY.fullmatch(key):
            raise InvalidSpec(
                f"{what}: key {key[:80]!r} must be letters, digits, '-', '_', '.' "
                "(optionally prefixed with 'domain/'), starting and ending with a letter or digit"
            )
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise InvalidSpec(
                f"{what}: value {value[:80]!r} of {key!r} must be at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit"
            )


def validate_spec(spec: jobs_pb2.JobSpec) -> None:
    """Raise InvalidSpec with a message saying what to fix, or return."""
    _printable(spec.name, "name", MAX_NAME)
    if any(ch in spec.name for ch in "\n\r\t") or any(ord(ch) < 32 for ch in spec.name):
        raise InvalidSpec("name must not contain control characters")
    has_command = len(spec.command) > 0
    has_script = spec.script != ""
    if has_command and has_script:
        raise InvalidSpec("give either a command or a script, not both")
    if not has_command and not has_script:
        raise InvalidSpec("nothing to run: the job needs a command or a script")
    if has_command:
        if len(spec.command) > MAX_ARGS:
            raise InvalidSpec(f"command has more than {MAX_ARGS} arguments")
        if spec.command[0].strip() == "":
            raise InvalidSpec("the command's program name is empty")
        for index, arg in enumerate(spec.command):
            _printable(arg, f"command argument {index}", MAX_ARG_BYTES)
    if has_script:
        _printable(spec.script, "script", MAX_SCRIPT_BYTES)
        if spec.script.strip() == "":
            raise InvalidSpec("the script is empty")
    if spec.interpreter and not _INTERPRETER.fullmatch(spec.interpreter):
        raise InvalidSpec(
            f"interpreter {spec.interpreter[:80]!r} must be a program name or path "
            "(letters, digits, '_', '.', '/', '+', '-')"
        )
    if spec.interpreter and not has_script:
        raise InvalidSpec("interpreter is only meaningful with a script")
    if len(spec.env) > MAX_ENV:
        raise InvalidSpec(f"env has more than {MAX_ENV} variables")
    for key, value in spec.env.items():
        if not _ENV_KEY.fullmatch(key):
            raise InvalidSpec(
                f"env: {key[:80]!r} is not a valid variable name (letters, digits, '_'; "
                "not starting with a digit)"
            )
        if key.startswith("HODEI_"):
            raise InvalidSpec(f"env: {key!r}: names starting with HODEI_ are reserved")
        _printable(value, f"env {key}", MAX_ENV_VALUE_BYTES)
    if spec.working_dir:
        _printable(spec.working_dir, "working_dir", 4096)
        if not spec.working_dir.startswith("/"):
            raise InvalidSpec(f"working_dir {spec.working_dir[:80]!r} must be an absolute path")
    validate_labels(dict(spec.labels), "labels")
    validate_labels(dict(spec.selector), "selector")
    resources = spec.resources
    if not math.isfinite(resources.cpus) or resources.cpus < 0:
        raise InvalidSpec("resources.cpus must be a number >= 0")
    if resources.cpus > 4096:
        raise InvalidSpec("resources.cpus must be at most 4096")
    if resources.memory_mb < 0:
        raise InvalidSpec("resources.memory_mb must be >= 0")
    if not math.isfinite(spec.timeout_seconds) or spec.timeout_seconds < 0:
        raise InvalidSpec("timeout must be a number of seconds >= 0 (0 means no timeout)")
    if spec.timeout_seconds > MAX_TIMEOUT_SECONDS:
        raise InvalidSpec(f"timeout must be at most {MAX_TIMEOUT_SECONDS} seconds")
    if spec.max_attempts < 0 or spec.max_attempts > MAX_ATTEMPTS:
        raise InvalidSpec(f"max_attempts must be between 1 and {MAX_ATTEMPTS}")
    _retry(spec.retry)
    _secrets(spec)


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


def _retry(retry: jobs_pb2.RetryPolicy) -> None:
    for ending in retry.on:
        if ending not in RETRYABLE:
            raise InvalidSpec(
                f"retry.on: {ending[:40]!r} is not one of: {', '.join(sorted(RETRYABLE))}"
            )
    for name in ("backoff_seconds", "max_backoff_seconds"):
        value = getattr(retry, name)
        if not math.isfinite(value) or value < 0 or value > MAX_BACKOFF_SECONDS:
            raise InvalidSpec(f"retry.{name} must be between 0 and {MAX_BACKOFF_SECONDS} seconds")
    if retry.max_backoff_seconds and retry.max_backoff_seconds < retry.backoff_seconds:
        raise InvalidSpec("retry.max_backoff_seconds must be >= retry.backoff_seconds")


def validate_idempotency_key(key: str) -> None:
    if len(key) > 256:
        raise InvalidSpec("idempotency key is longer than 256 characters")
    if any(ord(ch) < 32 for ch in key):
        raise InvalidSpec("idempotency key must not contain control characters")
