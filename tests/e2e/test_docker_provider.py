"""The Docker provider against a real Docker engine (started by scripts/docker-engine.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.docker_engine import IMAGE, DockerServer
from tests.e2e.harness import BIN
from tests.faults.harness import free_port

pytest_plugins = ["tests.e2e.docker_engine"]
pytestmark = pytest.mark.e2e


def _selector(provider: str) -> dict[str, list[str]]:
    return {"label": ["io.hodei.managed=true", f"io.hodei.provider={provider}"]}


def containers(client: Any, provider: str) -> list[Any]:
    return list(client.containers.list(all=True, filters=_selector(provider)))


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def provider_name() -> str:
    return f"dk-{uuid.uuid4().hex[:6]}"


def test_job_runs_in_a_labelled_limited_container_removed_at_stop(
    tmp_path: Path, database_url: str, docker_host: str, docker_client: Any, provider_name: str,
) -> None:
    server = DockerServer(tmp_path, database_url, workers=1, max_workers=2, slots=2,
                          docker_host=docker_host, provider_name=provider_name,
                          cpus=0.5, memory_mb=256)
    started = time.monotonic()
    server.start(timeout=90)
    try:
        print(f"server + first docker agent ready in {time.monotonic() - started:.2f}s")
        result = server.hodeictl(
            "job", "run", "--", "sh", "-c",
            'echo hi from $(hostname); tr "\\0" " " < /proc/1/cmdline',
        )
        out = result.stdout.decode()
        assert result.returncode == 0, result.stderr.decode() + server.log_path.read_text()
        assert out.startswith("hi from ")
        # PID 1 of the job's PID namespace is the agent: the job ran inside the container.
        assert "-m hodei_agent" in out
        assert "--token-file" in out

        [container] = containers(docker_client, provider_name)
        assert container.status == "running"
        labels = container.labels
        assert labels["io.hodei.managed"] == "true"
        assert labels["io.hodei.provider"] == provider_name
        assert labels["io.hodei.worker"].startswith(f"{provider_name}-")
        assert f"--name {labels['io.hodei.worker']}" in out
        host_config = container.attrs["HostConfig"]
        assert host_config["NanoCpus"] == 500_000_000
        assert host_config["Memory"] == 256 * 1024 * 1024
        assert host_config["NetworkMode"] == "host"
        assert container.image.tags == [IMAGE]
        # The bootstrap token is a file in the container, not in its environment.
        env = container.attrs["Config"]["Env"] or []
        assert not any(e.startswith("HODEI_BOOTSTRAP_TOKEN") for e in env)
    finally:
        assert server.stop() == 0, server.log_path.read_text()
    assert containers(docker_client, provider_name) == []


def test_containers_left_behind_by_a_crashed_server_are_reaped(
    tmp_path: Path, database_url: str, docker_host: str, docker_client: Any, provider_name: str,
) -> None:
    # A stray container with the provider's labels, as if from another (dead) server.
    stray = docker_client.containers.create(
        IMAGE, entrypoint=["sleep", "300"], name=f"hodei-{provider_name}-stray",
        labels={"io.hodei.managed": "true", "io.hodei.provider": provider_name,
                "io.hodei.worker": f"{provider_name}-stray",
                "io.hodei.owner": "gone.example:1"},
        network_mode="host",
    )
    stray.start()
    crashed = DockerServer(tmp_path / "a", database_url, workers=1, docker_host=docker_host,
                           provider_name=provider_name)
    crashed.workdir.mkdir()
    crashed.start(timeout=90)
    assert len(containers(docker_client, provider_name)) == 1  # the stray one is gone
    left = {c.id for c in containers(docker_client, provider_name)}
    assert stray.id not in left
    assert crashed.proc is not None
    crashed.proc.kill()  # SIGKILL: no chance to remove its container
    crashed.proc.wait()
    assert {c.id for c in containers(docker_client, provider_name)} == left

    server = DockerServer(tmp_path / "b", database_url, workers=1, docker_host=docker_host,
                          provider_name=provider_name)
    server.workdir.mkdir()
    # Not `start()`: the killed server's worker still counts as ready in the database.
    server.launch().wait_ready(timeout=90, wait_workers=False)
    try:
        def replaced() -> bool:
            now = [c for c in containers(docker_client, provider_name) if c.id not in left]
            return len(now) == 1 and len(now) == len(containers(docker_client, provider_name))

        wait_for(replaced, 60, "the new server's container and no other")
        [container] = containers(docker_client, provider_name)
        worker = container.labels["io.hodei.worker"]
        wait_for(lambda: any(w.name == worker for w in server.list_workers()), 60,
                 f"worker {worker} to connect")
        log = server.log_path.read_text()
        assert "reaped container" in log
    finally:
        assert server.stop() == 0
    assert containers(docker_client, provider_name) == []


def test_a_server_restarted_in_place_takes_over_its_containers_and_their_jobs(
    tmp_path: Path, database_url: str, docker_host: str, docker_client: Any, provider_name: str,
) -> None:
    """kill -9 the server while its docker agent runs a job; one restarted on the same
    address takes the container over (not reaped, not replaced): the job finishes whole,
    as its first attempt, and the container goes when this server stops."""
    listen = f"127.0.0.1:{free_port()}"
    lines = 200
    crashed = DockerServer(tmp_path / "a", database_url, workers=1, docker_host=docker_host,
                           provider_name=provider_name, listen=listen)
    crashed.workdir.mkdir()
    crashed.start(timeout=90)
    job_id = crashed.hodeictl(
        "job", "submit", "--", "sh", "-c",
        f"for i in $(seq 1 {lines}); do echo line-$i; sleep 0.05; done").stdout.decode().strip()
    wait_for(lambda: b"line-20\n" in crashed.hodeictl("job", "logs", job_id).stdout, 60,
             "the job's first lines")
    [container] = containers(docker_client, provider_name)
    assert crashed.proc is not None
    crashed.proc.kill()
    crashed.proc.wait()
    server = DockerServer(tmp_path / "b", database_url, workers=1, docker_host=docker_host,
                          provider_name=provider_name, listen=listen)
    server.workdir.mkdir()
    server.launch().wait_ready(timeout=90, wait_workers=False)
    try:
        wait_for(lambda: json.loads(server.hodeictl("job", "get", job_id, "-o", "json").stdout)
                 ["state"] == "succeeded", 90, "the job to finish")
        job = json.loads(server.hodeictl("job", "get", job_id, "-o", "json").stdout)
        logs = server.hodeictl("job", "logs", job_id).stdout
        assert len(job["attempts"]) == 1
        assert logs == b"".join(b"line-%d\n" % i for i in range(1, lines + 1))
        assert [c.id for c in containers(docker_client, provider_name)] == [container.id]
        assert "took over agent" in server.log_path.read_text()
    finally:
        assert server.stop() == 0
    assert containers(docker_client, provider_name) == []


def test_an_unreachable_engine_is_one_clear_line(tmp_path: Path, database_url: str) -> None:
    sock = tmp_path / "no-dockerd.sock"
    server = DockerServer(tmp_path, database_url, workers=1, docker_host=f"unix://{sock}")
    config = tmp_path / "server.toml"
    config.write_text(server.config_text())
    result = subprocess.run(
        [str(BIN / "hodei-server"), "--config", str(config)],
        env={**os.environ, "HODEI_DATABASE_URL": database_url}, capture_output=True,
        text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"hodei-server: cannot reach the Docker engine at unix://{sock}: "
                    "No such file or directory; is dockerd running? "
                    "(scripts/docker-engine.sh starts one)")


def test_a_missing_image_says_how_to_build_it(
    tmp_path: Path, database_url: str, docker_host: str, provider_name: str,
) -> None:
    server = DockerServer(tmp_path, database_url, workers=1, docker_host=docker_host,
                          provider_name=provider_name, provider_config="")
    config = tmp_path / "server.toml"
    config.write_text(server.config_text().replace(IMAGE, "hodei-agent:nope"))
    result = subprocess.run(
        [str(BIN / "hodei-server"), "--config", str(config)],
        env={**os.environ, "HODEI_DATABASE_URL": database_url}, capture_output=True,
        text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "the agent image hodei-agent:nope is not on the Docker engine" in last
    assert "scripts/build-agent-image.sh" in last
