from __future__ import annotations

import pytest

from hodei_api.v1 import jobs_pb2
from hodei_server.errors import InvalidSpec
from hodei_server.validation import parse_job_id, validate_spec


def spec(**kwargs: object) -> jobs_pb2.JobSpec:
    kwargs.setdefault("command", ["echo", "hi"])
    return jobs_pb2.JobSpec(**kwargs)  # type: ignore[arg-type]


def test_a_plain_command_is_valid() -> None:
    validate_spec(spec(name="build", env={"A": "1"}, labels={"team": "infra"},
                       selector={"os": "linux"}, timeout_seconds=10, max_attempts=3,
                       working_dir="/tmp"))


def test_a_script_is_valid() -> None:
    validate_spec(jobs_pb2.JobSpec(script="echo hi\n", interpreter="bash"))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"command": []}, "nothing to run"),
        ({"command": [""]}, "program name is empty"),
        ({"command": ["echo"], "script": "echo"}, "not both"),
        ({"timeout_seconds": -1}, "timeout must be"),
        ({"timeout_seconds": float("nan")}, "timeout must be"),
        ({"max_attempts": -2}, "max_attempts"),
        ({"max_attempts": 1000}, "max_attempts"),
        ({"env": {"1BAD": "x"}}, "not a valid variable name"),
        ({"env": {"A B": "x"}}, "not a valid variable name"),
        ({"env": {"HODEI_X": "x"}}, "reserved"),
        ({"env": {"A": "x\x00y"}}, "NUL"),
        ({"labels": {"bad key!": "x"}}, "labels: key"),
        ({"selector": {"os": "linux; rm -rf /"}}, "selector: value"),
        ({"working_dir": "relative/dir"}, "absolute path"),
        ({"name": "evil\x1b[2Jname"}, "control characters"),
        ({"interpreter": "sh -c 'x'"}, "interpreter"),
        ({"resources": jobs_pb2.Resources(cpus=-1)}, "cpus"),
        ({"resources": jobs_pb2.Resources(memory_mb=-5)}, "memory_mb"),
    ],
)
def test_bad_specs_say_what_to_fix(bad: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        validate_spec(spec(**bad))


def test_empty_script_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="script is empty"):
        validate_spec(jobs_pb2.JobSpec(script="   \n"))


def test_job_ids_must_be_uuids() -> None:
    assert str(parse_job_id("3f2b1c4e-0000-4000-8000-000000000000")).startswith("3f2b1c4e")
    with pytest.raises(InvalidSpec, match="is not a job id"):
        parse_job_id("abc")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"name": "a\u202eb"}, "U\\+202E"),
        ({"name": "zero\u200bwidth"}, "U\\+200B"),
        ({"name": "x" * 254}, "longer than 253 bytes"),
        ({"command": ["a" * 100_000] * 11}, "add up to more than"),
        ({"command": ["echo", "a" * 200_000]}, "command argument 1 is longer than"),
        ({"env": {"K" * 300: "v"}}, "not a valid variable name"),
        ({"env": {f"K{i}": "v" * 100_000 for i in range(11)}}, "env adds up to more than"),
        ({"working_dir": "/tmp/a\nb"}, "working_dir must not contain control"),
        ({"resources": jobs_pb2.Resources(cpus=float("inf"))}, "resources.cpus"),
        ({"resources": jobs_pb2.Resources(cpus=float("nan"))}, "resources.cpus"),
        ({"resources": jobs_pb2.Resources(memory_mb=2**62)}, "resources.memory_mb"),
        ({"timeout_seconds": float("inf")}, "timeout"),
        ({"retry": jobs_pb2.RetryPolicy(backoff_seconds=float("nan"))}, "retry.backoff"),
        ({"retry": jobs_pb2.RetryPolicy(on=["lost"] * 9)}, "retry.on"),
        ({"selector": {f"k{i}": "v" for i in range(65)}}, "selector: at most 64"),
    ],
)
def test_limits_name_the_field(bad: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        validate_spec(spec(**bad))


def test_a_spec_with_fields_the_server_does_not_know_is_refused() -> None:
    raw = spec().SerializeToString() + b"\xa8\x06\x05"  # field 101, a varint
    with pytest.raises(InvalidSpec, match="number 101"):
        validate_spec(jobs_pb2.JobSpec.FromString(raw))
    nested = jobs_pb2.Resources(cpus=1).SerializeToString() + b"\xa8\x06\x01"
    outer = spec().SerializeToString() + b"\x4a" + bytes([len(nested)]) + nested
    with pytest.raises(InvalidSpec, match=r"spec\.resources"):
        validate_spec(jobs_pb2.JobSpec.FromString(outer))


def test_an_oversized_spec_is_refused_first() -> None:
    with pytest.raises(InvalidSpec, match="at most 2097152 are accepted"):
        validate_spec(spec(script="x" * 3_000_000, command=[]))
