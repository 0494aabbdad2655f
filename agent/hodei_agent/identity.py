"""The agent's TLS identity: its key and the certificate the server issued for it.

The key is generated here and never leaves the host: the server gets a CSR. Key and
certificate are kept in the state directory (mode 0600) and in memory, from which the
gRPC channel credentials are built.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from hodei_agent.keys import KeyPair
from hodei_api.v1 import agent_pb2, agent_pb2_grpc

KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "ca.crt"
# Renew after this share of the certificate's lifetime.
RENEW_AT = 2 / 3
# After a failed renewal, try again after this share of the time left (within bounds).
RENEW_RETRY_SHARE = 0.1
RENEW_RETRY_MIN = 1.0
RENEW_RETRY_MAX = 60.0


def speaks_tls(address: str, timeout: float = 2.0) -> bool:
    """Whether a TLS handshake succeeds at `address` (its certificate unchecked): the
    agent dialled a TLS server in plaintext. Blocking; run it in a thread."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host or None):
            return True
    except (OSError, ValueError):
        return False


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Identity:
    """A key, its certificate, and when to renew it (monotonic clock)."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    renew_at: float
    expires_at: float

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at

    def retry_later(self) -> Identity:
        """After a failed renewal: try again after a share of the time left, within bounds."""
        now = time.monotonic()
        wait = min(max((self.expires_at - now) * RENEW_RETRY_SHARE, RENEW_RETRY_MIN),
                   RENEW_RETRY_MAX)
        return dataclasses.replace(self, renew_at=now + wait)

    def channel_credentials(self, server_ca: bytes) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(server_ca, self.key_pem, self.cert_pem)


class PendingKey:
    """A fresh key and its CSR, waiting for the server's certificate."""

    def __init__(self, common_name: str) -> None:
        self._key = KeyPair()
        self.csr_pem = self._key.csr(common_name).decode()

    def accept(self, issued: agent_pb2.IssuedCertificate, state_dir: Path) -> Identity:
        """Store the key with its new certificate; the identity to use from now on."""
        if not issued.certificate_pem:
            raise ValueError("the server returned no certificate")
        key = self._key.pem()
        _write_private(state_dir / KEY_FILE, key)
        _write_private(state_dir / CERT_FILE, issued.certificate_pem.encode())
        _write_private(state_dir / CA_FILE, issued.ca_chain_pem.encode())
        lifetime = max(issued.lifetime_seconds, 1.0)
        now = time.monotonic()
        return Identity(
            key_pem=key, cert_pem=issued.certificate_pem.encode(),
            ca_pem=issued.ca_chain_pem.encode(),
            renew_at=now + lifetime * RENEW_AT, expires_at=now + lifetime,
        )


@dataclass(frozen=True)
class TlsOptions:
    """The agent speaks TLS: it trusts `server_ca` and keeps its identity in `state_dir`."""

    server_ca: bytes
    state_dir: Path

    def register_channel(self, address: str, options: Sequence[tuple[str, Any]]
                         ) -> grpc.aio.Channel:
        """Server-authenticated TLS: the agent has no certificate yet."""
        credentials = grpc.ssl_channel_credentials(self.server_ca)
        return grpc.aio.secure_channel(address, credentials, options=options)

    def stream_channel(self, address: str, agent_port: int, identity: Identity,
                       options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        """Mutual TLS to the server's agent port, on the host of `address`."""
        host = address.rpartition(":")[0]
        return grpc.aio.secure_channel(
            f"{host}:{agent_port}", identity.channel_credentials(self.server_ca),
            options=options,
        )

    async def renew(self, channel: grpc.aio.Channel, worker_id: str, rpc_timeout: float
                    ) -> Identity:
        """A new key and certificate, asked for over a channel authenticated by the
        current certificate."""
        pending = PendingKey(worker_id)
        stub = agent_pb2_grpc.WorkerAgentServiceStub(channel)
        response = await stub.RenewCertificate(
            agent_pb2.RenewCertificateRequest(csr_pem=pending.csr_pem), timeout=rpc_timeout)
        return pending.accept(response.certificate, self.state_dir)
