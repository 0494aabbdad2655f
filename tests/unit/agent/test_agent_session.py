"""The whole agent against a scripted control plane over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from hodei_agent.agent import Agent
from hodei_agent.config import AgentConfig
from hodei_agent.errors import CredentialRejected, RegistrationRejected
from hodei_api.v1 import agent_pb2, jobs_pb2

# As the fake control plane in conftest.py hands them out / expects them.
WORKER_ID = "worker-7"
CREDENTIAL = "secret-credential"
TOKEN = "bootstrap-token"

Serve = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


def agent_config(*servers: str, drain_grace: float = 5.0) -> AgentConfig:
    return AgentConfig(
        servers=servers,
        bootstrap_token=TOKEN,
        name="test-agent",
        hostname="test-host",
        slots=2,
        labels={"zone": "test"},
        cpus=2.0,
        memory_mb=1024,
        drain_grace=drain_grace,
        log_level="DEBUG",
    )


def run_job(job_id: str, spec: jobs_pb2.JobSpec, attempt: int = 1) -> agent_pb2.RunJob:
    return agent_pb2.RunJob(job_id=job_id, attempt=attempt, spec=spec)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def of_kind(messages: list[agent_pb2.AgentMessage], kind: str) -> list[Any]:
    return [getattr(m, kind) for m in messages if m.WhichOneof("msg") == kind]


async def finish(agent_task: asyncio.Task[int], connection: Any, grace: float = 0.0) -> int:
    connection.send(drain=agent_pb2.Drain(grace_seconds=grace))
    async with asyncio.timeout(20):
        return await agent_task


def test_register_connect_run_and_drain(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            agent_task = asyncio.create_task(Agent(agent_config(served.address)).run())
            connection = await served.control.next_connection()

            registration = served.control.registrations[0]
            assert registration.bootstrap_token == TOKEN
            assert (registration.name, registration.hostname) == ("test-agent", "test-host")
            assert dict(registration.labels) == {"zone": "test"}
            assert registration.capacity.slots == 2 and registration.capacity.memory_mb == 1024
            assert registration.agent_version
            assert connection.metadata["authorization"] == f"Bearer {CREDENTIAL}"
            assert connection.metadata["x-hodei-worker-id"] == WORKER_ID

            hello = (await connection.expect("hello")).hello
            assert hello.worker_id == WORKER_ID and list(hello.running) == []
            assert hello.capacity.cpus == 2.0 and dict(hello.labels) == {"zone": "test"}
            heartbeat = await connection.expect_heartbeat()
            assert heartbeat.metrics.memory_total_mb > 0 and heartbeat.running_jobs == 0

            spec = jobs_pb2.JobSpec(
                script='echo "hello $HODEI_JOB_ID"; echo "${HODEI_BOOTSTRAP_TOKEN:-no token}" >&2\n'
                "exit 3\n"
            )
            connection.send(run_job=run_job("j1", spec))
            connection.send(run_job=run_job("j1", spec))  # a duplicate is ignored
            messages = await connection.until_finished()
            assert messages[0].WhichOneof("msg") == "job_accepted"
            assert len(of_kind(messages, "job_accepted")) == 1
            chunks = of_kind(messages, "log_chunk")
            assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
            assert b"".join(c.data for c in chunks if c.stream == 1) == b"hello j1\n"
            assert b"".join(c.data for c in chunks if c.stream == 2) == b"no token\n"
            finished = of_kind(messages, "job_finished")[0]
            assert finished.outcome == jobs_pb2.JOB_STATE_FAILED
            assert finished.has_exit_code and finished.exit_code == 3
            assert finished.last_seq == len(chunks)

            assert await finish(agent_task, connection) == 0
            assert len(served.control.registrations) == 1

    asyncio.run(scenario())


def test_lost_stream_resends_everything_unacknowledged(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            agent_task = asyncio.create_task(Agent(agent_config(served.address)).run())
            first = await served.control.next_connection()
            await first.expect("hello")
            spec = jobs_pb2.JobSpec(script="echo first; sleep 1; echo second\n")
            first.send(run_job=run_job("j1", spec))
            await first.expect("job_accepted")
            assert (await first.expect("log_chunk")).log_chunk.data == b"first\n"
            first.end(grpc.StatusCode.UNAVAILABLE)  # nothing was acknowledged

            second = await served.control.next_connection()
            hello = (await second.expect("hello")).hello
            assert [(r.job_id, r.attempt) for r in hello.running] == [("j1", 1)]
            messages = await second.until_finished()
            chunks = of_kind(messages, "log_chunk")
            assert [c.seq for c in chunks] == [1, 2]
            assert b"".join(c.data for c in chunks) == b"first\nsecond\n"
            finished = of_kind(messages, "job_finished")[0]
            assert finished.outcome == jobs_pb2.JOB_STATE_SUCCEEDED and finished.last_seq == 2

            assert await finish(agent_task, second) == 0

    asyncio.run(scenario())


def test_result_survives_a_server_restart(control_plane: Serve) -> None:
    async def scenario() -> None:
        port = free_port()
        async with control_plane(port) as served:
            agent_task = asyncio.create_task(Agent(agent_config(served.address)).run())
            first = await served.control.next_connection()
            await first.expect("hello")
            first.send(run_job=run_job("j1", jobs_pb2.JobSpec(command=["echo", "done"])))
            messages = await first.until_finished(ack=False)
            assert of_kind(messages, "job_finished")[0].last_seq == 1
        # The server is gone with nothing acknowledged; a new one comes up on the same port.
        async with control_plane(port, served.control):
            second = await served.control.next_connection()
            hello = (await second.expect("hello")).hello
            assert [(r.job_id, r.attempt) for r in hello.running] == [("j1", 1)]
            resent = await second.until_finished()
            assert [m.WhichOneof("msg") for m in resent] == [
                "job_accepted",
                "log_chunk",
                "job_finished",
            ]
            assert resent[1].log_chunk.data == b"done\n"
            assert await finish(agent_task, second) == 0

    asyncio.run(scenario())


def test_fails_over_to_the_next_server(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            dead = f"127.0.0.1:{free_port()}"
            agent_task = asyncio.create_task(Agent(agent_config(dead, served.address)).run())
            connection = await served.control.next_connection()
            await connection.expect("hello")
            assert await finish(agent_task, connection) == 0

    asyncio.run(scenario())


def test_cancel_command(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            agent_task = asyncio.create_task(Agent(agent_config(served.address)).run())
            connection = await served.control.next_connection()
            await connection.expect("hello")
            connection.send(run_job=run_job("j1", jobs_pb2.JobSpec(command=["sleep", "60"])))
            await connection.expect("job_accepted")
            connection.send(
                cancel_job=agent_pb2.CancelJobCommand(
                    job_id="j1", attempt=1, reason="user asked", grace_seconds=2
                )
            )
            finished = of_kind(await connection.until_finished(), "job_finished")[0]
            assert finished.outcome == jobs_pb2.JOB_STATE_CANCELLED
            assert finished.reason == "user asked"
            assert await finish(agent_task, connection) == 0

    asyncio.run(scenario())


def test_drain_hands_back_new_jobs_and_cancels_running_ones(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            agent_task = asyncio.create_task(Agent(agent_config(served.address)).run())
            connection = await served.control.next_connection()
            await connection.expect("hello")
            connection.send(run_job=run_job("long", jobs_pb2.JobSpec(command=["sleep", "60"])))
            await connection.expect("job_accepted")
            connection.send(drain=agent_pb2.Drain(grace_seconds=0.5))
            await asyncio.sleep(0.1)
            connection.send(run_job=run_job("late", jobs_pb2.JobSpec(command=["true"])))
            messages = await connection.until_finished(jobs=2)
            finished = {f.job_id: f for f in of_kind(messages, "job_finished")}
            assert finished["late"].outcome == jobs_pb2.JOB_STATE_LOST
            assert finished["late"].reason == "agent is draining"
            assert not finished["late"].has_exit_code
            assert finished["long"].outcome == jobs_pb2.JOB_STATE_CANCELLED
            async with asyncio.timeout(20):
                assert await agent_task == 0

    asyncio.run(scenario())


def test_rejected_registration_is_final(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            served.control.register_error = grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(RegistrationRejected, match="UNAUTHENTICATED"):
                async with asyncio.timeout(10):
                    await Agent(agent_config(served.address)).run()
            assert len(served.control.registrations) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("refuse_after", [0.0, 0.0002, 0.0005, 0.001, 0.002])
def test_forgotten_worker_exits(control_plane: Serve, refuse_after: float) -> None:
    # Refusing while the agent's Hello is in flight makes grpc report INTERNAL to the agent
    # instead of the server's status; the agent must still recognise the refusal.
    async def scenario() -> None:
        async with control_plane() as served:
            served.control.known_credentials = set()
            served.control.refuse_after = refuse_after
            with pytest.raises(CredentialRejected, match="UNAUTHENTICATED"):
                async with asyncio.timeout(10):
                    await Agent(agent_config(served.address)).run()

    asyncio.run(scenario())


async def agent_process(address: str, *extra: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["HODEI_BOOTSTRAP_TOKEN"] = TOKEN
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hodei_agent",
        "--server",
        address,
        *extra,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )


def test_cli_rejected_registration_exits_1_with_one_line(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            served.control.register_error = grpc.StatusCode.PERMISSION_DENIED
            process = await agent_process(served.address, "--log-level", "ERROR")
            async with asyncio.timeout(20):
                _, stderr = await process.communicate()
            assert process.returncode == 1
            lines = stderr.decode().splitlines()
            assert len(lines) == 1 and "rejected the registration" in lines[0], lines

    asyncio.run(scenario())


def test_cli_sigterm_lets_the_running_job_finish(control_plane: Serve) -> None:
    async def scenario() -> None:
        async with control_plane() as served:
            process = await agent_process(served.address, "--drain-grace", "10")
            connection = await served.control.next_connection()
            await connection.expect("hello")
            spec = jobs_pb2.JobSpec(
                script='sleep 0.5; echo "done ${HODEI_BOOTSTRAP_TOKEN:-clean}"\n'
            )
            connection.send(run_job=run_job("j1", spec))
            await connection.expect("job_accepted")
            process.send_signal(signal.SIGTERM)
            messages = await connection.until_finished()
            finished = of_kind(messages, "job_finished")[0]
            assert finished.outcome == jobs_pb2.JOB_STATE_SUCCEEDED
            assert of_kind(messages, "log_chunk")[0].data == b"done clean\n"
            async with asyncio.timeout(20):
                _, stderr = await process.communicate()
            assert process.returncode == 0, stderr.decode()

    asyncio.run(scenario())
