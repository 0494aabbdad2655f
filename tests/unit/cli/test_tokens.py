"""hodeictl and API tokens: where the token comes from, that it is sent, never echoed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import grpc
import pytest
from hodeictl_fakes import invoke, serve

from hodei_api.v1 import jobs_pb2, jobs_pb2_grpc
from hodeictl import config, target
from hodeictl.commands import token as token_cmd
from hodeictl.errors import InvalidConfig, UsageError

SECRET = "hodei_0123456789abcdef_" + "S" * 43


class RecordingJobService(jobs_pb2_grpc.JobServiceServicer):
    """Records the authorization header of each call."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ListJobsResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.seen.append(str(metadata.get("authorization", "")))
        return jobs_pb2.ListJobsResponse()


def test_context_set_reads_the_token_from_stdin_and_never_echoes_it() -> None:
    from typer.testing import CliRunner

    from hodeictl import app

    result = CliRunner().invoke(app.app, ["context", "set", "prod", "--server", "h:1",
                                          "--token-stdin"], input=SECRET + "\n")
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "with a token" in result.stderr
    path = Path(os.environ["HODEI_CONFIG"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.Config.load().token_for("prod") == SECRET
    assert target.Settings(context="prod").token() == SECRET


def test_a_context_can_name_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "prod.token"
    token_file.write_text(SECRET + "\n")
    assert invoke("context", "set", "prod", "--server", "h:1", "--token-file",
                  str(token_file)).exit_code == 0
    assert SECRET not in Path(os.environ["HODEI_CONFIG"]).read_text()
    assert target.Settings(context="prod").token() == SECRET
    token_file.unlink()
    with pytest.raises(InvalidConfig, match="cannot read its token file"):
        target.Settings(context="prod").token()


def test_hodei_token_wins_and_server_flag_alone_sends_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    assert target.Settings(server="h:1").token() == ""
    monkeypatch.setenv("HODEI_TOKEN", SECRET)
    assert target.Settings(server="h:1").token() == SECRET
    monkeypatch.delenv("HODEI_TOKEN")
    token_file = tmp_path / "t"
    token_file.write_text(SECRET)
    assert target.Settings(server="h:1", token_file=str(token_file)).token() == SECRET


def test_every_call_carries_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = RecordingJobService()

    def register(server: grpc.aio.Server) -> None:
        jobs_pb2_grpc.add_JobServiceServicer_to_server(jobs, server)

    with serve(register) as address:
        assert invoke("--server", address, "job", "list").exit_code == 0
        monkeypatch.setenv("HODEI_TOKEN", SECRET)
        assert invoke("--server", address, "job", "list").exit_code == 0
    assert jobs.seen == ["", f"Bearer {SECRET}"]


def test_roles_and_expiry_parse() -> None:
    assert token_cmd.parse_expiry("30d") == 30 * 86400
    assert token_cmd.parse_expiry("12h") == 12 * 3600
    assert token_cmd.parse_expiry("never") == 0
    with pytest.raises(UsageError):
        token_cmd.parse_expiry("soon")
    with pytest.raises(UsageError):
        token_cmd.parse_role("root")
    assert token_cmd.role_name(token_cmd.parse_role("Operator")) == "operator"


def test_token_create_refuses_an_unknown_role_before_calling() -> None:
    result = invoke("--server", "127.0.0.1:1", "token", "create", "ci", "--role", "root")
    assert result.exit_code == 2
    assert "--role must be one of viewer, submitter, operator, admin" in result.stderr
