"""gRPC errors → one line and an exit code; job id validation; --debug."""

from __future__ import annotations

import socket
import uuid

import grpc
import pytest
from hodeictl_fakes import AbortingJobService, invoke, serve, services

from hodeictl import client, errors

JOB_ID = "6c3be1d5-66ae-4ed2-bd59-6543f84072e9"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "submitting", "kind", "exit_code", "message"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            False,
            errors.Unavailable,
            69,
            "cannot reach the Hodei server at h:1: connection\nrefused. "
            "Is it running? (hodeictl status)",
        ),
        (grpc.StatusCode.NOT_FOUND, False, errors.NotFound, 1, "job 123 not found"),
        (grpc.StatusCode.INVALID_ARGUMENT, True, errors.InvalidSpec, 2, "invalid job: bad"),
        (grpc.StatusCode.INVALID_ARGUMENT, False, errors.UsageError, 2, "invalid request: bad"),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            False,
            errors.ServerTimeout,
            69,
            "the Hodei server at h:1 did not answer in time (Deadline Exceeded)",
        ),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            False,
            errors.PermissionDenied,
            77,
            "permission denied: no",
        ),
        (
            grpc.StatusCode.UNAUTHENTICATED,
            False,
            errors.NotAuthenticated,
            77,
            "the Hodei server at h:1 refused the call: no token. Ask an admin for an API token "
            "(hodeictl token create NAME --role submitter) and use it: hodeictl context set NAME "
            "--server h:1 --token-stdin, or HODEI_TOKEN",
        ),
        (grpc.StatusCode.INTERNAL, False, errors.ServerError, 1, "server error (INTERNAL): boom"),
    ],
)
def test_rpc_error_mapping(
    code: grpc.StatusCode,
    submitting: bool,
    kind: type[errors.HodeiCtlError],
    exit_code: int,
    message: str,
) -> None:
    details = {
        grpc.StatusCode.UNAVAILABLE: "connection\n  refused",
        grpc.StatusCode.NOT_FOUND: "job 123 not found",
        grpc.StatusCode.INVALID_ARGUMENT: "bad",
        grpc.StatusCode.DEADLINE_EXCEEDED: "Deadline Exceeded",
        grpc.StatusCode.PERMISSION_DENIED: "no",
        grpc.StatusCode.UNAUTHENTICATED: "no token",
        grpc.StatusCode.INTERNAL: "boom",
    }[code]
    error = errors.from_rpc_error(rpc_error(code, details), "h:1", submitting=submitting)
    assert type(error) is kind
    assert error.exit_code == exit_code
    assert str(error) == message.replace("\n", " ")


def test_the_class_docstring_is_the_default_message() -> None:
    assert str(errors.NotFound()) == "not found."
    assert str(errors.from_rpc_error(rpc_error(grpc.StatusCode.NOT_FOUND, ""), "h:1")) == (
        "not found."
    )


@pytest.mark.parametrize(
    ("code", "details", "args", "exit_code", "line"),
    [
        (grpc.StatusCode.NOT_FOUND, f"job {JOB_ID} not found", ("get", JOB_ID), 1,
         f"job {JOB_ID} not found"),
        (grpc.StatusCode.INVALID_ARGUMENT, "command must not be empty", ("submit", "--", "x"), 2,
         "invalid job: command must not be empty"),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad page token", ("list",), 2,
         "invalid request: bad page token"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "too slow", ("cancel", JOB_ID), 69,
         "the Hodei server at ADDRESS did not answer in time (too slow)"),
        (grpc.StatusCode.UNAUTHENTICATED, "who are you", ("run", "--", "x"), 77,
         "the Hodei server at ADDRESS refused the call: who are you. Ask an admin for an API "
         "token (hodeictl token create NAME --role submitter) and use it: hodeictl context set "
         "NAME --server ADDRESS --token-stdin, or HODEI_TOKEN"),
    ],
)  # fmt: skip
def test_server_errors_end_as_one_line_and_an_exit_code(
    code: grpc.StatusCode, details: str, args: tuple[str, ...], exit_code: int, line: str
) -> None:
    with serve(services(jobs=AbortingJobService(code, details))) as address:
        result = invoke("--server", address, "job", *args)
    assert result.exit_code == exit_code
    assert result.stderr == f"hodeictl: {line.replace('ADDRESS', address)}\n"
    assert result.stdout == ""


def test_an_unreachable_server_exits_69() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        result = invoke("--server", address, "job", "get", JOB_ID)
    assert result.exit_code == 69
    assert result.stderr.startswith(f"hodeictl: cannot reach the Hodei server at {address}: ")
    assert result.stderr.endswith(". Is it running? (hodeictl status)\n")
    assert result.stderr.count("\n") == 1


def test_debug_shows_the_traceback() -> None:
    with serve(services(jobs=AbortingJobService(grpc.StatusCode.INTERNAL, "boom"))) as address:
        quiet = invoke("--server", address, "job", "get", JOB_ID)
        loud = invoke("--debug", "--server", address, "job", "get", JOB_ID)
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert "AioRpcError" in loud.stderr
    assert loud.stderr.endswith("hodeictl: server error (INTERNAL): boom\n")
    assert loud.exit_code == quiet.exit_code == 1


@pytest.mark.parametrize("value", ["abc", "123", "", "3f1c0a2e-8b7a-4d8e-9a57-1c2d3e4f5a6"])
def test_malformed_job_ids_are_refused_locally(value: str) -> None:
    with pytest.raises(errors.InvalidJobId) as caught:
        client.parse_job_id(value)
    assert str(caught.value) == f"{value!r} is not a job id (expected a UUID)"


def test_job_ids_are_canonicalised() -> None:
    job_id = uuid.uuid4()
    assert client.parse_job_id(str(job_id).upper()) == str(job_id)
    assert client.parse_job_id(job_id.hex) == str(job_id)


@pytest.mark.parametrize("command", ["get", "logs", "cancel"])
def test_what_cannot_name_a_job_exits_2_without_contacting_a_server(command: str) -> None:
    result = invoke("--server", "127.0.0.1:1", "job", command, "")
    assert result.exit_code == 2
    assert result.stderr == "hodeictl: '' is not a job id, id prefix or name\n"
    # A short id or a name is looked up: with no server, that says so.
    looked_up = invoke("--server", "127.0.0.1:1", "job", command, "abc")
    assert looked_up.exit_code == 69 and "cannot reach" in looked_up.stderr


def test_an_empty_command_exits_2() -> None:
    result = invoke("--server", "127.0.0.1:1", "job", "run", "--")
    assert result.exit_code == 2
    assert result.stderr == (
        "hodeictl: nothing to run: give a command after --, --script or -f FILE\n"
    )


def test_typer_usage_errors_keep_exit_2() -> None:
    assert invoke("job", "list", "--state", "sleeping").exit_code == 2
    assert invoke("job", "run", "--cpus", "-1", "--", "x").exit_code == 2
    assert invoke("job", "frobnicate").exit_code == 2
