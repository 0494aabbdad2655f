"""Secrets through the real runner: delivery to a real process, redaction of its output."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hodei_agent.batcher import BatchLimits
from hodei_agent.keeperclient import KeeperClient
from hodei_agent.runner import JobResult, JobRunner
from hodei_agent.secretfiles import JobSecrets, is_secrets_dir
from hodei_agent.statedir import JobFiles, StateDir
from hodei_api.v1 import agent_pb2, jobs_pb2, logs_pb2

STDOUT = logs_pb2.LOG_STREAM_STDOUT
STDERR = logs_pb2.LOG_STREAM_STDERR
SECRET = b"s3cr3t-Value-4242"
PEM = (b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       b"aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSByZWFsIGtleQ==\n-----END PRIVATE KEY-----\n")


@dataclass
class Sink:
    chunks: list[tuple[int, bytes]] = field(default_factory=list)

    async def write(self, stream: logs_pb2.LogStream, data: bytes) -> None:
        self.chunks.append((stream, data))

    def output(self, stream: int = STDOUT) -> bytes:
        return b"".join(d for s, d in self.chunks if s == stream)


def _files() -> JobFiles:
    """The output files of job-1 attempt 1, in a temporary state dir."""
    return StateDir.open(None).new_job("job-1", 1)


def _spec(script: str, *refs: jobs_pb2.SecretRef, **fields: Any) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(script=script, secrets=list(refs), **fields)


async def _run(spec: jobs_pb2.JobSpec, values: dict[str, bytes],
               limits: BatchLimits | None = None) -> tuple[JobResult, Sink]:
    sink = Sink()
    keeper = KeeperClient()
    runner = JobRunner(
        "job-1", 1, spec, worker_id="worker-1", sink=sink, files=_files(),
        base_env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
        secrets=[agent_pb2.SecretValue(name=k, value=v) for k, v in values.items()],
        keeper=keeper, **({"limits": limits} if limits else {}),
    )
    try:
        result = await runner.run(lambda pid: None)
    finally:
        keeper.close()
    return result, sink


def test_default_delivery_is_a_private_file_removed_afterwards() -> None:
    script = (
        'd="$HODEI_SECRETS_DIR"; echo "dir=$d"; stat -c "dirmode=%a" "$d"; '
        'stat -c "filemode=%a" "$d/DB_PASSWORD"; echo "env=${DB_PASSWORD:-unset}"; '
        'test "$(cat "$d/DB_PASSWORD")" = "$EXPECTED" && echo same'
    )
    spec = _spec(script, jobs_pb2.SecretRef(name="DB_PASSWORD"), env={"EXPECTED": "x"})
    spec.env["EXPECTED"] = SECRET.decode()  # in env only to compare; its value is redacted
    result, sink = asyncio.run(_run(spec, {"DB_PASSWORD": SECRET}))
    out = sink.output().decode()
    assert result.outcome == jobs_pb2.JOB_STATE_SUCCEEDED, out
    assert "dirmode=700" in out and "filemode=600" in out and "same" in out
    assert "env=unset" in out
    directory = out.split("dir=")[1].split()[0]
    assert not os.path.exists(directory)


def test_stdin_delivery_and_as_env_only_when_asked() -> None:
    script = ('python3 -c "import json,sys; d=json.load(sys.stdin); '
              'print(sorted(d), len(d[\'db\']))"; echo "dir=${HODEI_SECRETS_DIR:-none}"; '
              'echo "tok=${API_TOKEN:-unset} len=${#API_TOKEN}"')
    spec = _spec(script, jobs_pb2.SecretRef(name="DB_PASSWORD", as_file="db"),
                 jobs_pb2.SecretRef(name="env:TOKEN", as_env="API_TOKEN"),
                 secret_delivery="stdin")
    result, sink = asyncio.run(_run(spec, {"DB_PASSWORD": SECRET, "env:TOKEN": b"tok-123456"}))
    out = sink.output().decode()
    assert result.outcome == jobs_pb2.JOB_STATE_SUCCEEDED, out + sink.output(STDERR).decode()
    assert f"['TOKEN', 'db'] {len(SECRET)}" in out
    assert "dir=none" in out
    assert "tok=[REDACTED:env:TOKEN] len=10" in out


@pytest.mark.parametrize("stream", ["", ">&2"])
def test_output_is_redacted_in_every_form(stream: str) -> None:
    forms = [
        SECRET, SECRET + b"\n", base64.b64encode(SECRET), base64.urlsafe_b64encode(SECRET),
        base64.b64encode(SECRET).rstrip(b"="), urllib.parse.quote(SECRET).encode(),
        base64.b64encode(b"x" + SECRET + b"y"), base64.b64encode(b"xy" + SECRET + b"z"),
        json.dumps(PEM.decode()).encode(), PEM, PEM.rstrip(b"\n"),
    ]
    lines = "".join(f"printf '%s\\n' '{f.decode()}' {stream}; " for f in forms)
    script = f'cat "$HODEI_SECRETS_DIR/DB_PASSWORD" {stream}; {lines}'
    spec = _spec(script, jobs_pb2.SecretRef(name="DB_PASSWORD"), jobs_pb2.SecretRef(name="PEM"))
    result, sink = asyncio.run(_run(spec, {"DB_PASSWORD": SECRET, "PEM": PEM}))
    out = sink.output(STDERR if stream else STDOUT)
    assert result.outcome == jobs_pb2.JOB_STATE_SUCCEEDED
    for needle in (SECRET, PEM, b"BEGIN PRIVATE", base64.b64encode(SECRET)[:12],
                   b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"):
        assert needle not in out
    assert out.count(b"[REDACTED:DB_PASSWORD]") >= len(forms) - 4
    assert b"[REDACTED:PEM]" in out


def test_a_secret_split_across_reads_and_a_pause_is_redacted() -> None:
    half = len(SECRET) // 2
    script = (f"printf 'start {SECRET[:half].decode()}'; sleep 0.4; "
              f"printf '{SECRET[half:].decode()} end\\n'")
    spec = _spec(script, jobs_pb2.SecretRef(name="S"))
    _, sink = asyncio.run(_run(spec, {"S": SECRET}))
    assert sink.output() == b"start [REDACTED:S] end\n"
    assert len(sink.chunks) >= 1


def test_a_secret_across_the_batch_size_boundary_is_redacted() -> None:
    # 64 KiB reads: the value straddles the end of the first read.
    pad = 64 * 1024 - 5
    script = f"head -c {pad} /dev/zero | tr '\\0' a; printf '{SECRET.decode()}\\n'"
    spec = _spec(script, jobs_pb2.SecretRef(name="S"))
    _, sink = asyncio.run(_run(spec, {"S": SECRET}))
    out = sink.output()
    assert SECRET not in out and out == b"a" * pad + b"[REDACTED:S]\n"


def test_a_held_prefix_does_not_delay_output_forever() -> None:
    # The job prints what could be the start of the secret, then waits: the tail is let go
    # (as a redacted fragment) after the hold time, long before the job ends.
    script = f"printf 'tail {SECRET[:6].decode()}'; sleep 3; echo done"
    spec = _spec(script, jobs_pb2.SecretRef(name="S"))
    limits = BatchLimits()

    async def scenario() -> tuple[bytes, Sink]:
        sink = Sink()
        keeper = KeeperClient()
        runner = JobRunner("job-1", 1, spec, worker_id="w", sink=sink, files=_files(),
                           base_env={"PATH": "/usr/bin:/bin"}, limits=limits,
                           secrets=[agent_pb2.SecretValue(name="S", value=SECRET)],
                           keeper=keeper)
        task = asyncio.create_task(runner.run(lambda pid: None))
        await asyncio.sleep(2.0)
        early = sink.output()
        await task
        keeper.close()
        return early, sink

    early, sink = asyncio.run(scenario())
    assert early == b"tail [REDACTED:S]"
    assert sink.output() == b"tail [REDACTED:S]done\n"


def test_reasons_are_redacted() -> None:
    spec = jobs_pb2.JobSpec(command=["true"], working_dir="/nonexistent/" + SECRET.decode(),
                            secrets=[jobs_pb2.SecretRef(name="S")])
    result, _ = asyncio.run(_run(spec, {"S": SECRET}))
    assert result.outcome == jobs_pb2.JOB_STATE_FAILED
    assert SECRET.decode() not in result.reason and "[REDACTED:S]" in result.reason


def test_a_missing_value_or_non_text_env_fails_to_start_without_showing_it() -> None:
    spec = _spec("true", jobs_pb2.SecretRef(name="S"))
    result, _ = asyncio.run(_run(spec, {}))
    assert result.reason == "failed to start: secret 'S' was not sent with the job"
    spec = _spec("true", jobs_pb2.SecretRef(name="S", as_env="S"))
    result, _ = asyncio.run(_run(spec, {"S": b"\xff\xfe\x00binary"}))
    assert "not UTF-8" in result.reason and "\\xff" not in result.reason


def test_only_a_secrets_dir_the_agent_makes_is_taken_for_one(tmp_path: Path) -> None:
    """A path read back from a job's environment is removed only if it is such a dir."""
    spec = _spec("true", jobs_pb2.SecretRef(name="DB"))
    delivery = JobSecrets(spec, [agent_pb2.SecretValue(name="DB", value=SECRET)]).prepare({})
    assert delivery.directory is not None and is_secrets_dir(delivery.directory)
    decoy = Path(tempfile.gettempdir()) / f"hodei-secrets-decoy-{os.getpid()}"
    decoy.symlink_to(tmp_path)
    elsewhere = tmp_path / "hodei-secrets-elsewhere"
    elsewhere.mkdir()
    try:
        for path in ("", "/", "/etc", tempfile.gettempdir(), str(decoy), str(elsewhere),
                     delivery.directory + "/..", "/dev/shm"):
            assert not is_secrets_dir(path), path
    finally:
        decoy.unlink()
        delivery.remove()
