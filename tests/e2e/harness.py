"""Real server and hodeictl processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import psycopg

from hodei_api.v1 import workers_pb2, workers_pb2_grpc
from hodei_server.security import apitokens

BIN = Path(sys.executable).parent


def create_api_token(database_url: str, name: str, role: str = "admin",
                     ttl_seconds: float = 0.0) -> str:
    """A new API token, written straight into the (migrated) database as an operator would."""
    token, token_id, secret_hash = apitokens.new_token()
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_by, expires_at)"
            " VALUES (%s, %s, %s, %s, 'operator',"
            " CASE WHEN %s > 0 THEN now() + make_interval(secs => %s) END)",
            (token_id, name, role, secret_hash, ttl_seconds, ttl_seconds),
        )
    return token


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call of a sync channel."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> _CallDetails:
        return _CallDetails(details.method, details.timeout,
                            [*(details.metadata or ()), self.header], details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any,
                               request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                               requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


def token_channel(address: str, token: str) -> grpc.Channel:
    """An insecure channel whose every call carries `token`."""
    return grpc.intercept_channel(grpc.insecure_channel(address), BearerInterceptor(token))


def hodeictl_argv() -> list[str]:
    return [str(BIN / "hodeictl")]


@dataclass
class ServerProcess:
    """A `hodei-server` subprocess with a local provider of `workers` agents."""

    workdir: Path
    database_url: str
    workers: int = 2
    slots: int = 4
    extra_config: str = ""
    # Defaults to `workers` (a fixed pool); set it higher to let the provider scale.
    max_workers: int | None = None
    provider_config: str = ""
    # With TLS: the CA certificate clients verify the server with.
    ca_cert: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    # An admin API token for the harness's own calls and hodeictl (made once serving).
    token: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "server.log"

    def config_text(self) -> str:
        return (
            'listen = "127.0.0.1:0"\n'
            "heartbeat_interval = 1.0\n"
            "resync_interval = 0.5\n"
            f"{self.extra_config}\n"
            "[[providers]]\n"
            'type = "local"\n'
            'name = "local"\n'
            f"min_workers = {self.workers}\n"
            f"max_workers = {self.max_workers if self.max_workers is not None else self.workers}\n"
            f"slots = {self.slots}\n"
            f"{self.provider_config}\n"
        )

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it."""
        config = self.workdir / "server.toml"
        config.write_text(self.config_text())
        self.ready_path.unlink(missing_ok=True)
        env = {**os.environ, "HODEI_DATABASE_URL": self.database_url}
        self.proc = subprocess.Popen(
            [str(BIN / "hodei-server"), "--config", str(config),
             "--ready-file", str(self.ready_path)],
            env=env, stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
        )
        return self

    @property
    def ready_path(self) -> Path:
        return self.workdir / "ready.json"

    def start(self, timeout: float = 60.0, wait_workers: bool = True) -> ServerProcess:
        return self.launch().wait_ready(timeout, wait_workers)

    def wait_ready(self, timeout: float = 60.0, wait_workers: bool = True) -> ServerProcess:
        assert self.proc is not None
        ready = self.ready_path
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.address = json.loads(ready.read_text())["address"]
        if not self.token:  # the server has migrated the database by now
            self.token = create_api_token(self.database_url,
                                          f"harness-{secrets.token_hex(4)}")
        if wait_workers:
            self.wait_workers(self.workers, deadline - time.monotonic())
        return self

    def channel(self) -> grpc.Channel:
        """A channel to the server whose calls carry the harness's admin token."""
        if self.ca_cert is None:
            return token_channel(self.address, self.token)
        secure = grpc.secure_channel(
            self.address, grpc.ssl_channel_credentials(self.ca_cert.read_bytes()))
        return grpc.intercept_channel(secure, BearerInterceptor(self.token))

    def list_workers(self) -> list[workers_pb2.Worker]:
        with self.channel() as channel:
            stub = workers_pb2_grpc.WorkerServiceStub(channel)
            return list(stub.ListWorkers(workers_pb2.ListWorkersRequest(), timeout=5).workers)

    def wait_workers(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        ready_states = {workers_pb2.WORKER_STATE_READY, workers_pb2.WORKER_STATE_BUSY}
        while time.monotonic() < deadline:
            if sum(w.state in ready_states for w in self.list_workers()) >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{count} workers did not connect:\n{self.log_path.read_text()}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def hodeictl(
        self, *args: str, timeout: float = 120.0, input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "HODEI_SERVER": self.address, "HODEI_TOKEN": self.token}
        if self.ca_cert is not None:
            env["HODEI_CA_CERT"] = str(self.ca_cert)
        return subprocess.run(
            [*hodeictl_argv(), *args], env=env, capture_output=True, timeout=timeout,
            input=input,
        )
