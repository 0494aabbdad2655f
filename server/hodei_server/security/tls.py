"""Transport security: which ports speak TLS, with what, and who a TLS peer is.

Two ports when TLS is on. `listen` authenticates the server only: hodeictl and agent
registration (which has no client certificate yet) use it. `agent_listen` requires a client
certificate signed by `tls_client_ca`: agent streams and certificate renewal use it. (gRPC
Python can either require a client certificate or not ask for one, never ask optionally.)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

from hodei_server.config import ServerConfig
from hodei_server.errors import ConfigError
from hodei_server.security import pki


def split_host(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str, key: str, *, private: bool = False) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key} = {path!r}: cannot read it ({exc.strerror or exc})") from None
    if private and Path(path).expanduser().stat().st_mode & 0o077:
        raise ConfigError(f"{key} = {path!r}: a private key must be readable by its owner only "
                          f"(chmod 600 {path})")
    return data


@dataclass(frozen=True)
class Tls:
    """What the server presents and whom it trusts; None of it when TLS is off."""

    server_key: bytes
    server_cert: bytes
    client_ca: bytes
    ca_key: bytes | None
    ca_cert: bytes | None
    agent_cert_lifetime: dt.timedelta
    # Absolute path of ca_cert, handed to agents that providers start; "" if unset.
    ca_cert_path: str = ""

    def api_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.server_key, self.server_cert)])

    def agent_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.server_key, self.server_cert)], root_certificates=self.client_ca,
            require_client_auth=True,
        )

    @property
    def can_sign(self) -> bool:
        return self.ca_key is not None and self.ca_cert is not None

    def sign(self, csr_pem: bytes, worker_id: object) -> pki.Issued:
        assert self.ca_key is not None and self.ca_cert is not None
        return pki.sign_agent_csr(self.ca_key, self.ca_cert, csr_pem, worker_id,  # type: ignore[arg-type]
                                  self.agent_cert_lifetime)


def load(config: ServerConfig) -> Tls | None:
    """The TLS settings, or None for plaintext; refuses plaintext off loopback."""
    if not config.tls_cert and not config.tls_key:
        for key, address in (("listen", config.listen),):
            host, _ = split_host(address)
            if not is_loopback(host) and not config.insecure:
                raise ConfigError(
                    f"refusing to serve plaintext gRPC on {address} ({key} is not a loopback "
                    "address): set tls_cert and tls_key (see `hodeictl certs init`), or "
                    "insecure = true to accept it"
                )
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigError("tls_cert and tls_key go together: set both")
    client_ca_path = config.tls_client_ca or config.ca_cert
    if not client_ca_path:
        raise ConfigError("TLS needs tls_client_ca (the CA that signs agent certificates), "
                          "or ca_cert")
    if bool(config.ca_key) != bool(config.ca_cert):
        raise ConfigError("ca_key and ca_cert go together: set both, or neither")
    if config.agent_cert_days <= 0:
        raise ConfigError("agent_cert_days must be more than 0")
    tls = Tls(
        server_key=_read(config.tls_key, "tls_key", private=True),
        server_cert=_read(config.tls_cert, "tls_cert"),
        client_ca=_read(client_ca_path, "tls_client_ca"),
        ca_key=_read(config.ca_key, "ca_key", private=True) if config.ca_key else None,
        ca_cert=_read(config.ca_cert, "ca_cert") if config.ca_cert else None,
        agent_cert_lifetime=dt.timedelta(days=config.agent_cert_days),
        ca_cert_path=str(Path(config.ca_cert).expanduser().resolve()) if config.ca_cert else "",
    )
    try:
        pki.certificate_names(tls.server_cert)
    except ValueError:
        raise ConfigError(f"tls_cert = {config.tls_cert!r} is not a PEM certificate") from None
    return tls


def agent_listen(config: ServerConfig) -> str:
    """The mutual-TLS port: `agent_listen`, else the `listen` host on the next port."""
    if config.agent_listen:
        return config.agent_listen
    host, port = split_host(config.listen)
    host = f"[{host}]" if ":" in host else host
    next_port = 0 if not port.isdigit() or int(port) == 0 else int(port) + 1
    return f"{host}:{next_port}"


def check_advertised(tls: Tls, address: str) -> None:
    """Agents started by providers dial `address`: the server certificate must name it."""
    host, _ = split_host(address)
    names = pki.certificate_names(tls.server_cert)
    if host not in names:
        raise ConfigError(
            f"agents would dial {address}, but the server certificate names only "
            f"{', '.join(names) or 'nothing'}: set advertise_address to one of those, or "
            f"issue a certificate with `hodeictl certs init --host {host}`"
        )


def peer_certificate(context: grpc.aio.ServicerContext) -> bytes | None:
    """The verified client certificate of the call, if it came with one."""
    auth = context.auth_context() or {}
    certs = auth.get("x509_pem_cert") or []
    return bytes(certs[0]) if certs else None
