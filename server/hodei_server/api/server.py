"""The gRPC server: its options, its interceptors, the services it carries, its ports."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hodei_api.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from hodei_server.api.agent.handshake import AgentServicer
from hodei_server.api.health import Health
from hodei_server.api.interceptors import AuthInterceptor, MalformedRequests
from hodei_server.api.servicers.jobs import JobServicer
from hodei_server.api.servicers.logs import LogServicer
from hodei_server.api.servicers.secrets import SecretServicer
from hodei_server.api.servicers.templates import ScheduleServicer, TemplateServicer
from hodei_server.api.servicers.tokens import TokenServicer
from hodei_server.api.servicers.watch import EventServicer
from hodei_server.api.servicers.workers import WorkerServicer
from hodei_server.config import ServerConfig
from hodei_server.errors import ConfigError
from hodei_server.security import tls as tls_mod
from hodei_server.security.authz import Authorizer

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVICE_NAMES = [
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    logs_pb2.DESCRIPTOR.services_by_name["LogService"].full_name,
    workers_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["WorkerAgentService"].full_name,
    secrets_pb2.DESCRIPTOR.services_by_name["SecretService"].full_name,
    templates_pb2.DESCRIPTOR.services_by_name["TemplateService"].full_name,
    templates_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
]


@dataclass(frozen=True)
class Services:
    """Every servicer the server carries."""

    jobs: JobServicer
    logs: LogServicer
    workers: WorkerServicer
    tokens: TokenServicer
    secrets: SecretServicer
    agents: AgentServicer
    health: Health
    templates: TemplateServicer
    schedules: ScheduleServicer
    events: EventServicer


def build(authorizer: Authorizer, services: Services) -> grpc.aio.Server:
    """A server carrying `services`, every call checked by the interceptors first."""
    server = grpc.aio.server(
        interceptors=[MalformedRequests(), AuthInterceptor(authorizer)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    jobs_pb2_grpc.add_JobServiceServicer_to_server(services.jobs, server)
    logs_pb2_grpc.add_LogServiceServicer_to_server(services.logs, server)
    workers_pb2_grpc.add_WorkerServiceServicer_to_server(services.workers, server)
    auth_pb2_grpc.add_TokenServiceServicer_to_server(services.tokens, server)
    secrets_pb2_grpc.add_SecretServiceServicer_to_server(services.secrets, server)
    templates_pb2_grpc.add_TemplateServiceServicer_to_server(services.templates, server)
    templates_pb2_grpc.add_ScheduleServiceServicer_to_server(services.schedules, server)
    events_pb2_grpc.add_EventServiceServicer_to_server(services.events, server)
    agent_pb2_grpc.add_WorkerAgentServiceServicer_to_server(services.agents, server)
    health_pb2_grpc.add_HealthServicer_to_server(services.health.servicer, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, reflection.SERVICE_NAME, "grpc.health.v1.Health"], server
    )
    return server


def listen(
    server: grpc.aio.Server, config: ServerConfig, tls: tls_mod.Tls | None,
    agents: AgentServicer,
) -> str:
    """Bind the server's ports (with TLS, the agents' mutual-TLS one too); the address
    agents that providers start dial."""
    if tls is None:
        port = _bind(server, config.listen)
    else:
        port = _bind(server, config.listen, tls.api_credentials())
        agents.agent_port = _bind(server, tls_mod.agent_listen(config), tls.agent_credentials(),
                                  "agent_listen")
    address = config.advertise_address or _advertised(config.listen, port)
    if tls is not None:
        tls_mod.check_advertised(tls, address)
    return address


def _check_free(listen: str, option: str = "--listen") -> None:
    """Say clearly when the address is taken, before gRPC logs its own noise about it."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{option} {listen!r} must look like HOST:PORT (e.g. 127.0.0.1:50051)")
    if int(port_text) == 0:
        return
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port_text)))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {listen}: {exc.strerror or exc}; choose another with {option}"
            ) from exc


def _bind(server: grpc.aio.Server, listen: str,
          credentials: grpc.ServerCredentials | None = None, option: str = "--listen") -> int:
    _check_free(listen, option)
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {listen}; choose another with {option}") from exc
    return port


def _advertised(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"
