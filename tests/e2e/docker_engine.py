"""A real Docker engine and agent image for the Docker provider's end-to-end tests."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def _image_tag() -> str:
    """A tag named after what goes into the image: a test never runs another tree's agent,
    and test processes side by side build it once."""
    digest = hashlib.sha256()
    sources = [ROOT / "pyproject.toml", ROOT / "scripts" / "build-agent-image.sh"]
    for folder in ("agent", "proto"):
        sources += sorted(p for p in (ROOT / folder).rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts
                          and ".egg-info" not in str(p))
    for path in sources:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"hodei-agent:test-{digest.hexdigest()[:12]}"


IMAGE = _image_tag()
_BUILD_LOCK = Path("/tmp/hodei-agent-image.lock")


@dataclass
class DockerServer(ServerProcess):
    """A `hodei-server` whose one provider is `docker`."""

    docker_host: str = ""
    provider_name: str = "docker"
    cpus: float = 0.5
    memory_mb: int = 256
    listen: str = "127.0.0.1:0"

    def config_text(self) -> str:
        return (
            f'listen = "{self.listen}"\n'
            "heartbeat_interval = 1.0\n"
            "resync_interval = 0.5\n"
            f"{self.extra_config}\n"
            "[[providers]]\n"
            'type = "docker"\n'
            f'name = "{self.provider_name}"\n'
            f'docker_host = "{self.docker_host}"\n'
            f'image = "{IMAGE}"\n'
            f"min_workers = {self.workers}\n"
            f"max_workers = {self.max_workers if self.max_workers is not None else self.workers}\n"
            f"slots = {self.slots}\n"
            f"cpus = {self.cpus}\n"
            f"memory_mb = {self.memory_mb}\n"
            "stop_timeout = 10\n"
            f"{self.provider_config}\n"
        )


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / script)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """DOCKER_HOST of an engine with the agent image (started and built if needed).

    Outside CI, a machine that cannot start an engine skips these tests; in CI
    (`CI=true`) that is a failure.
    """
    in_ci = os.environ.get("CI") == "true"
    engine = _run("docker-engine.sh")
    if engine.returncode != 0:
        message = f"cannot start a Docker engine:\n{engine.stderr[-2000:]}"
        if in_ci:
            pytest.fail(message)
        pytest.skip(message)
    host = engine.stdout.strip().splitlines()[-1].removeprefix("DOCKER_HOST=")
    ensure_agent_image(host)
    yield host


def ensure_agent_image(host: str) -> None:
    """Build IMAGE on the engine at `host` unless it is there (one build at a time)."""
    env = {**os.environ, "DOCKER_HOST": host, "HODEI_AGENT_IMAGE": IMAGE}
    with _BUILD_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        present = subprocess.run(["docker", "-H", host, "image", "inspect", IMAGE],
                                 capture_output=True, timeout=60, env=env)
        if present.returncode == 0:
            return
        build = subprocess.run([str(ROOT / "scripts" / "build-agent-image.sh")],
                               capture_output=True, text=True, timeout=900, cwd=ROOT,
                               env=env)
        if build.returncode != 0:
            pytest.fail(f"cannot build the agent image:\n{build.stderr[-3000:]}")


@pytest.fixture
def docker_client(docker_host: str) -> Iterator[object]:
    import docker

    client = docker.DockerClient(base_url=docker_host, version="auto")
    try:
        yield client
    finally:
        client.close()
