"""Starts and stops agents as containers on a Docker engine.

The docker SDK is blocking: every call runs in a thread (`asyncio.to_thread`). Containers
carry ownership labels, so the ones a crashed server left behind are found: taken over if
their agent dials this server's address (a server restarted in place), else reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from hodei_plugins.docker.errors import DockerProviderError, image_missing, translate
from hodei_plugins.docker.reference import check_reference
from hodei_plugins.provider import ProviderConfig

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

log = logging.getLogger(__name__)

LABEL_MANAGED = "io.hodei.managed"
LABEL_PROVIDER = "io.hodei.provider"
LABEL_WORKER = "io.hodei.worker"
# "<host>:<pid>" of the server process that created the container.
LABEL_OWNER = "io.hodei.owner"
# Where the bootstrap token is put (with put_archive, before start): a file, unlike an
# environment variable, does not show in `docker inspect`.
TOKEN_DIR = "/tmp"
TOKEN_NAME = "hodei-bootstrap-token"
# The CA certificate the agent verifies the server with, when the server speaks TLS.
CA_NAME = "hodei-ca.crt"
POLL_INTERVAL = 1.0
API_TIMEOUT = 30


@dataclass(frozen=True)
class DockerProviderConfig(ProviderConfig):
    name: str = "docker"
    image: str = "hodei-agent:latest"
    # "" = env DOCKER_HOST, else the SDK's default (unix:///var/run/docker.sock).
    docker_host: str = ""
    # "host": agents reach a server listening on loopback.
    network_mode: str = "host"
    # Per-container limits (0 = none); also what the agent offers to jobs.
    cpus: float = 0.0
    memory_mb: int = 0
    # Seconds between SIGTERM (the agent drains) and SIGKILL.
    stop_timeout: int = 30

    def __post_init__(self) -> None:
        check_reference(self.image)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    """Whether the server that created a container is a live process on this host."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _server_of(command: list[str]) -> str:
    """The address an agent's command line tells it to dial."""
    for index, arg in enumerate(command[:-1]):
        if arg == "--server":
            return command[index + 1]
    return ""


def _files_archive(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar of {name: (content, mode)}, for `put_archive`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerProvider:
    """Each worker is a container running the agent; its infra id is the container id."""

    type_name: ClassVar[str] = "docker"
    config_class: ClassVar[type[ProviderConfig]] = DockerProviderConfig

    def __init__(self, config: ProviderConfig) -> None:
        assert isinstance(config, DockerProviderConfig)
        self.config = config
        self.host = config.docker_host or os.environ.get("DOCKER_HOST", "") or (
            "unix:///var/run/docker.sock")
        self._client: DockerClient | None = None
        self._containers: dict[str, str] = {}  # container id -> worker name
        self._exited: list[str] = []
        self._poller: asyncio.Task[None] | None = None
        # Creations run to completion even if their caller is cancelled, and the exit
        # waits for them: a container started during shutdown is removed, not leaked.
        self._creating: set[asyncio.Task[str]] = set()
        self._closing = False

    async def __aenter__(self) -> DockerProvider:
        self._client = await self._call("connect", self._connect)
        await self._call("find the agent image", self._check_image)
        self._poller = asyncio.create_task(self._poll(), name=f"docker-{self.config.name}-poll")
        log.info("docker provider %s ready (engine %s, image %s)", self.config.name,
                 self.host, self.config.image)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.gather(*self._creating, return_exceptions=True)
        results = await asyncio.gather(
            *(self.destroy_worker(cid) for cid in list(self._containers)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("docker provider %s: %s", self.config.name, result)
        if self._client is not None:
            self._client.close()

    async def create_worker(
        self, *, name: str, bootstrap_token: str, server_address: str,
        labels: dict[str, str], slots: int, ca_cert: str = "",
    ) -> str:
        argv = ["--server", server_address, "--name", name, "--slots", str(slots),
                "--token-file", f"{TOKEN_DIR}/{TOKEN_NAME}"]
        files = {TOKEN_NAME: (bootstrap_token.encode(), 0o400)}
        if ca_cert:
            try:
                files[CA_NAME] = (await asyncio.to_thread(Path(ca_cert).read_bytes), 0o444)
            except OSError as exc:
                raise DockerProviderError(f"cannot read the CA certificate {ca_cert}: "
                                          f"{exc.strerror or exc}") from None
            argv += ["--ca-cert", f"{TOKEN_DIR}/{CA_NAME}"]
        if self.config.cpus:
            argv += ["--cpus", str(self.config.cpus)]
        if self.config.memory_mb:
            argv += ["--memory-mb", str(self.config.memory_mb)]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        if self._closing:
            raise DockerProviderError(f"docker provider {self.config.name} is shutting down")
        task = asyncio.create_task(self._start(name, argv, _files_archive(files)))
        self._creating.add(task)
        task.add_done_callback(self._creating.discard)
        return await asyncio.shield(task)

    async def _start(self, name: str, argv: list[str], files: bytes) -> str:
        started = time.monotonic()
        container_id: str = await self._call(
            f"start a container for {name}", self._create, name, argv, files)
        self._containers[container_id] = name
        log.info("docker provider %s started agent %s (container %s, %.2fs)",
                 self.config.name, name, container_id[:12], time.monotonic() - started)
        return container_id

    async def destroy_worker(self, infra_id: str) -> None:
        """Stop (SIGTERM: the agent drains; SIGKILL after `stop_timeout`), then remove."""
        name = self._containers.pop(infra_id, None)
        await self._call(f"remove container {infra_id[:12]}", self._remove, infra_id, True)
        log.info("docker provider %s removed agent %s (container %s)", self.config.name,
                 name or "?", infra_id[:12])

    def forget_exited(self) -> list[str]:
        """Container ids of agents that exited by themselves (drained, crashed)."""
        gone, self._exited = self._exited, []
        return gone

    # The blocking side, run in threads.

    async def _call(self, doing: str, fn: Any, *args: Any) -> Any:
        import docker.errors
        import requests.exceptions

        try:
            return await asyncio.to_thread(fn, *args)
        except DockerProviderError:
            raise
        except (docker.errors.DockerException, requests.exceptions.RequestException,
                OSError) as exc:
            raise translate(exc, self.host, doing) from exc

    @property
    def client(self) -> DockerClient:
        assert self._client is not None, "provider used outside `async with`"
        return self._client

    def _connect(self) -> DockerClient:
        import docker

        # version="auto" negotiates with older engines (Debian's docker.io speaks 1.41).
        client = docker.DockerClient(base_url=self.host, version="auto", timeout=API_TIMEOUT)
        client.ping()
        return client

    def _check_image(self) -> None:
        import docker.errors

        try:
            self.client.images.get(self.config.image)
        except docker.errors.ImageNotFound:
            raise image_missing(self.config.image, self.host) from None

    def _selector(self) -> dict[str, list[str]]:
        return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_PROVIDER}={self.config.name}"]}

    def _create(self, name: str, argv: list[str], files: bytes) -> str:
        import docker.errors

        kwargs: dict[str, Any] = {}
        if self.config.cpus:
            kwargs["nano_cpus"] = int(self.config.cpus * 1e9)
        if self.config.memory_mb:
            kwargs["mem_limit"] = f"{self.config.memory_mb}m"
        try:
            container: Container = self.client.containers.create(
                self.config.image,
                entrypoint=["python3", "-m", "hodei_agent"],
                command=argv,
                name=f"hodei-{name}",
                labels={
                    LABEL_MANAGED: "true",
                    LABEL_PROVIDER: self.config.name,
                    LABEL_WORKER: name,
                    LABEL_OWNER: _owner(),
                },
                network_mode=self.config.network_mode,
                stop_signal="SIGTERM",
                environment={"PYTHONUNBUFFERED": "1"},
                detach=True,
                **kwargs,
            )
        except docker.errors.ImageNotFound:
            raise image_missing(self.config.image, self.host) from None
        try:
            container.put_archive(TOKEN_DIR, files)
            container.start()
        except BaseException:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
            raise
        return str(container.id)

    def _remove(self, container_id: str, graceful: bool) -> None:
        import docker.errors

        try:
            container = self.client.containers.get(container_id)
            if graceful and container.status == "running":
                container.stop(timeout=self.config.stop_timeout)
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    async def adopt_workers(self, *, server_address: str) -> dict[str, str]:
        """Take over the running containers of this provider that no live server process
        owns and whose agent dials `server_address` (left by this server's predecessor):
        from now on this provider watches them and removes them at the end. Remove the
        other ones no live server owns. Returns the worker names and container ids taken."""
        containers = await self._call(
            "list containers", lambda: self.client.containers.list(
                all=True, filters=self._selector()))
        adopted = {}
        for container in containers:
            owner = container.labels.get(LABEL_OWNER, "")
            if _owner_alive(owner) or container.id in self._containers:
                continue
            worker = container.labels.get(LABEL_WORKER, "")
            command = container.attrs.get("Config", {}).get("Cmd") or []
            if (worker and container.status == "running"
                    and _server_of(command) == server_address):
                self._containers[container.id] = worker
                adopted[worker] = str(container.id)
                log.info("docker provider %s took over agent %s (container %s, left by %s)",
                         self.config.name, worker, container.short_id, owner)
                continue
            await self._call(f"remove container {container.short_id}", self._remove,
                             container.id, False)
            log.warning("docker provider %s reaped container %s (worker %s, left behind by %s)",
                        self.config.name, container.short_id,
                        container.labels.get(LABEL_WORKER, "?"), owner or "an unknown server")
        return adopted

    async def _poll(self) -> None:
        """Notice (and remove) containers whose agent exited by itself."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                await self._collect_exited()
            except DockerProviderError as exc:
                log.warning("docker provider %s: %s", self.config.name, exc)

    async def _collect_exited(self) -> None:
        if not self._containers:
            return
        selector = self._selector() | {"status": ["exited", "dead"]}
        stopped = await self._call("list containers", lambda: self.client.containers.list(
            all=True, filters=selector))
        for container in stopped:
            name = self._containers.pop(container.id, None)
            if name is None:
                continue
            code = container.attrs.get("State", {}).get("ExitCode")
            log.info("agent %s exited (container %s, exit code %s)", name,
                     container.short_id, code)
            await self._call(f"remove container {container.short_id}", self._remove,
                             container.id, False)
            self._exited.append(container.id)
