"""Real server and hodeictl processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hodei_api.v1 import workers_pb2, workers_pb2_grpc

BIN = Path(sys.executable).parent


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
        if wait_workers:
            self.wait_workers(self.workers, deadline - time.monotonic())
        return self

    def channel(self) -> grpc.Channel:
        if self.ca_cert is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(
            self.address, grpc.ssl_channel_credentials(self.ca_cert.read_bytes()))

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
        env = {**os.environ, "HODEI_SERVER": self.address}
        if self.ca_cert is not None:
            env["HODEI_CA_CERT"] = str(self.ca_cert)
        return subprocess.run(
            [*hodeictl_argv(), *args], env=env, capture_output=True, timeout=timeout,
            input=input,
        )
