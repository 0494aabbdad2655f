"""Transport security: plaintext refusals, agent certificates, bootstrap tokens, rotation.

Real server and agent processes over real TLS; each test prints its figures.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from cryptography import x509

from hodei_agent.keys import KeyPair
from hodei_api.v1 import agent_pb2, agent_pb2_grpc, workers_pb2
from hodei_server.security import pki
from tests.e2e.docker_engine import DockerServer
from tests.e2e.harness import BIN, ServerProcess
from tests.faults.harness import free_port

pytest_plugins = ["tests.e2e.docker_engine"]
pytestmark = pytest.mark.e2e


# ---- set-up shared by this module ------------------------------------------------------

def certs_init(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hodeictl"), "certs", "init", "--dir", str(directory),
                           *args], capture_output=True, text=True, timeout=60)


def tls_config(certs: Path, agent_port: int, agent_cert_days: float = 7.0) -> str:
    return (
        f'tls_cert = "{certs}/server.crt"\n'
        f'tls_key = "{certs}/server.key"\n'
        f'ca_cert = "{certs}/ca.crt"\n'
        f'ca_key = "{certs}/ca.key"\n'
        f'agent_listen = "127.0.0.1:{agent_port}"\n'
        f"agent_cert_days = {agent_cert_days!r}\n"
    )


@dataclass
class TlsServer:
    server: ServerProcess
    certs: Path
    agent_port: int

    @property
    def ca(self) -> bytes:
        return (self.certs / "ca.crt").read_bytes()

    def token(self, ttl: str = "10m") -> str:
        out = subprocess.run(
            [str(BIN / "hodei-server"), "token", "create", "--database-url",
             self.server.database_url, "--ttl", ttl], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.decode().strip()

    def register(self, token: str, key: KeyPair, name: str = "probe"
                 ) -> agent_pb2.RegisterResponse:
        request = agent_pb2.RegisterRequest(
            bootstrap_token=token, name=name, hostname="probe",
            capacity=workers_pb2.Capacity(slots=1), csr_pem=key.csr(name).decode())
        with grpc.secure_channel(self.server.address,
                                 grpc.ssl_channel_credentials(self.ca)) as channel:
            return agent_pb2_grpc.WorkerAgentServiceStub(channel).Register(request, timeout=10)

    def connect(self, key_pem: bytes, cert_pem: bytes, claimed: str, credential: str,
                port: int | None = None) -> grpc.StatusCode:
        """Open a stream with this client certificate, say Hello, close: the status."""
        credentials = grpc.ssl_channel_credentials(self.ca, key_pem, cert_pem)
        address = f"127.0.0.1:{port or self.agent_port}"
        metadata = (("authorization", f"Bearer {credential}"), ("x-hodei-worker-id", claimed))
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(worker_id=claimed))
        with grpc.secure_channel(address, credentials) as channel:
            stub = agent_pb2_grpc.WorkerAgentServiceStub(channel)
            try:
                for _ in stub.Connect(iter([hello]), metadata=metadata, timeout=10):
                    pass
            except grpc.RpcError as error:
                return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


@pytest.fixture
def tls_server(tmp_path: Path, database_url: str) -> Iterator[TlsServer]:
    """A TLS server with no agents of its own."""
    certs = tmp_path / "certs"
    assert certs_init(certs).returncode == 0
    port = free_port()
    server = ServerProcess(tmp_path, database_url, workers=0,
                           extra_config=tls_config(certs, port), ca_cert=certs / "ca.crt")
    server.start()
    try:
        yield TlsServer(server, certs, port)
    finally:
        server.stop()


def refusals(database_url: str, action: str) -> list[dict[str, object]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT actor, detail FROM audit_log WHERE action = %s AND NOT allowed ORDER BY id",
            (action,)).fetchall()
    return [{"actor": actor, **detail} for actor, detail in rows]


# ---- plaintext -------------------------------------------------------------------------

@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.10:0"])
def test_plaintext_off_loopback_is_refused_without_insecure(
    tmp_path: Path, database_url: str, listen: str
) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'listen = "{listen}"\n')
    out = subprocess.run(
        [str(BIN / "hodei-server"), "--config", str(config), "--database-url", database_url],
        capture_output=True, text=True, timeout=60)
    lines = out.stderr.strip().splitlines()
    refused = out.returncode == 1 and len(lines) == 1 and "insecure = true" in lines[0]
    print(f"plaintext on {listen} refused: {int(refused)}/1")
    assert refused, out.stderr
    assert "tls_cert" in lines[0]


def test_agent_refuses_plaintext_to_a_remote_server() -> None:
    servers = ["192.0.2.10:50051", "hodei.example.com:50051"]
    refused = 0
    for server in servers:
        out = subprocess.run(
            [str(BIN / "hodei-agent"), "--server", server],
            env={"HODEI_BOOTSTRAP_TOKEN": "x", "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60)
        if out.returncode == 2 and "--ca-cert" in out.stderr and "--insecure" in out.stderr:
            refused += 1
    print(f"agent plaintext to a remote server refused: {refused}/{len(servers)}")
    assert refused == len(servers)


def test_agent_without_ca_cert_stops_at_a_tls_server(tls_server: TlsServer) -> None:
    out = subprocess.run(
        [str(BIN / "hodei-agent"), "--server", tls_server.server.address],
        env={"HODEI_BOOTSTRAP_TOKEN": tls_server.token(), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    stopped = out.returncode == 1 and "speaks TLS: pass --ca-cert" in out.stderr
    print(f"plaintext agent at a TLS server stopped with one line: {int(stopped)}/1")
    assert stopped, out.stderr
    assert "Traceback" not in out.stderr


# ---- agent certificates ----------------------------------------------------------------

def test_a_certificate_from_another_ca_is_refused(tls_server: TlsServer,
                                                  tmp_path: Path) -> None:
    token = tls_server.token()
    key = KeyPair()
    real = tls_server.register(token, key)
    worker_id = real.worker_id
    # A second CA that mints a certificate for the very same worker id.
    other_key, other_cert = pki.create_ca("Mallory CA", 1)
    mallory = KeyPair()
    forged = pki.sign_agent_csr(other_key, other_cert, mallory.csr("x"),
                                uuid.UUID(worker_id), dt.timedelta(hours=1))
    self_signed_key, self_signed = pki.create_ca(worker_id, 1)
    attempts = [
        (mallory.pem(), forged.cert_pem),
        (self_signed_key, self_signed),
    ]
    refused = 0
    for key_pem, cert_pem in attempts:
        code = tls_server.connect(key_pem, cert_pem, worker_id, real.credential)
        refused += code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
    # Control: the real certificate is accepted.
    accepted = tls_server.connect(key.pem(), real.certificate.certificate_pem.encode(),
                                  worker_id, real.credential)
    print(f"foreign-CA certificates refused: {refused}/{len(attempts)}; "
          f"genuine accepted: {accepted.name}")
    assert refused == len(attempts)
    assert accepted == grpc.StatusCode.OK


def test_a_valid_certificate_claiming_another_worker_is_refused(
    tls_server: TlsServer, database_url: str
) -> None:
    alice_key, bob_key = KeyPair(), KeyPair()
    alice = tls_server.register(tls_server.token(), alice_key, "alice")
    bob = tls_server.register(tls_server.token(), bob_key, "bob")
    alice_cert = alice.certificate.certificate_pem.encode()
    claims = [
        (bob.worker_id, bob.credential),     # Bob's id and even Bob's credential
        (bob.worker_id, alice.credential),
        (str(uuid.uuid4()), alice.credential),
        ("", alice.credential),
    ]
    refused = sum(
        tls_server.connect(alice_key.pem(), alice_cert, claimed, credential)
        == grpc.StatusCode.UNAUTHENTICATED
        for claimed, credential in claims
    )
    # No client certificate at all: the server-authenticated port refuses Connect.
    with grpc.secure_channel(tls_server.server.address,
                             grpc.ssl_channel_credentials(tls_server.ca)) as channel:
        stub = agent_pb2_grpc.WorkerAgentServiceStub(channel)
        with pytest.raises(grpc.RpcError) as no_cert:
            for _ in stub.Connect(iter([]), metadata=(
                    ("authorization", f"Bearer {alice.credential}"),
                    ("x-hodei-worker-id", alice.worker_id)), timeout=10):
                pass
    refused += no_cert.value.code() == grpc.StatusCode.UNAUTHENTICATED
    total = len(claims) + 1
    audited = refusals(database_url, "worker.connect")
    print(f"identity claims refused: {refused}/{total}; audited: {len(audited)}/{total}")
    assert refused == total
    assert len(audited) == total
    assert all(row["actor"] in (f"worker:{alice.worker_id}", "anonymous") for row in audited)


def test_a_replaced_certificate_is_refused(tls_server: TlsServer) -> None:
    key = KeyPair()
    reg = tls_server.register(tls_server.token(), key)
    chain = [(key.pem(), reg.certificate.certificate_pem.encode())]
    for _ in range(2):  # two renewals, each authenticated by the newest certificate
        key_pem, cert_pem = chain[-1]
        new_key = KeyPair()
        credentials = grpc.ssl_channel_credentials(tls_server.ca, key_pem, cert_pem)
        with grpc.secure_channel(f"127.0.0.1:{tls_server.agent_port}", credentials) as ch:
            reply = agent_pb2_grpc.WorkerAgentServiceStub(ch).RenewCertificate(
                agent_pb2.RenewCertificateRequest(csr_pem=new_key.csr("x").decode()),
                timeout=10)
        chain.append((new_key.pem(), reply.certificate.certificate_pem.encode()))
    codes = [tls_server.connect(k, c, reg.worker_id, reg.credential) for k, c in chain]
    print(f"certificates: original {codes[0].name}, previous {codes[1].name}, "
          f"current {codes[2].name}")
    assert codes == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK, grpc.StatusCode.OK]


# ---- bootstrap tokens at registration --------------------------------------------------

def test_expired_reused_and_forged_tokens_are_refused(
    tls_server: TlsServer, database_url: str
) -> None:
    expired = tls_server.token(ttl="1s")
    used = tls_server.token()
    tls_server.register(used, KeyPair())
    time.sleep(1.5)
    cases = {"expired": expired, "reused": used, "forged": secrets.token_urlsafe(32),
             "empty": ""}
    refused = 0
    for token in cases.values():
        with pytest.raises(grpc.RpcError) as error:
            tls_server.register(token, KeyPair())
        refused += error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    audited = refusals(database_url, "worker.register")
    print(f"bad bootstrap tokens refused: {refused}/{len(cases)}; "
          f"audited: {len(audited)}/{len(cases)}")
    assert refused == len(cases)
    assert len(audited) == len(cases)
    # The audit trail names the refusal, never the secret that was tried.
    assert not any(token and token in json.dumps(row) for token in cases.values()
                   for row in audited)
    # A bad CSR does not burn a good token.
    good = tls_server.token()
    request = agent_pb2.RegisterRequest(bootstrap_token=good, name="x", hostname="x",
                                        capacity=workers_pb2.Capacity(slots=1),
                                        csr_pem="not a csr")
    with grpc.secure_channel(tls_server.server.address,
                             grpc.ssl_channel_credentials(tls_server.ca)) as channel:
        with pytest.raises(grpc.RpcError) as bad_csr:
            agent_pb2_grpc.WorkerAgentServiceStub(channel).Register(request, timeout=10)
    assert bad_csr.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert tls_server.register(good, KeyPair()).worker_id


# ---- rotation under load ---------------------------------------------------------------

LINES = 150


def test_rotation_while_jobs_stream_drops_nothing(tmp_path: Path, database_url: str) -> None:
    certs = tmp_path / "certs"
    assert certs_init(certs).returncode == 0
    lifetime_days = 3.0 / 86400  # a 3 s certificate: renewed every 2 s
    server = ServerProcess(
        tmp_path, database_url, workers=1,
        extra_config=tls_config(certs, free_port(), lifetime_days), ca_cert=certs / "ca.crt",
    ).start()
    try:
        script = f"for i in $(seq 1 {LINES}); do echo \"line $i\"; sleep 0.08; done"
        runs = [
            subprocess.Popen([str(BIN / "hodeictl"), "--server", server.address, "--ca-cert",
                              str(certs / "ca.crt"), "job", "run", "--", "sh", "-c", script],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "HODEI_TOKEN": server.token})
            for _ in range(3)
        ]
        results = [run.communicate(timeout=120) for run in runs]
        expected = "".join(f"line {i}\n" for i in range(1, LINES + 1)).encode()
        dropped = sum(run.returncode != 0 for run in runs)
        lost = sum(max(0, LINES - out.count(b"\n")) for out, _ in results)
        jobs = json.loads(server.hodeictl("job", "list", "-o", "json").stdout)
        attempts = [job["attempt"] for job in jobs]
        rotations = len(re.findall(r"renewed its certificate", server.log_path.read_text()))
        print(f"streams dropped: {dropped}/{len(runs)}, lines lost: {lost}/{LINES * len(runs)}, "
              f"certificate rotations: {rotations}, attempts: {attempts}")
        assert dropped == 0, [err for _, err in results]
        assert all(out == expected for out, _ in results)
        assert rotations >= 3
        stored = [server.hodeictl("job", "logs", job["id"]).stdout for job in jobs]
        assert all(out == expected for out in stored)
        assert attempts == [1] * len(runs)  # the same attempt throughout: nothing was lost
    finally:
        server.stop()


# ---- an agent on another machine joins over TLS -----------------------------------------

def test_an_external_agent_joins_over_tls_and_keeps_its_key(
    tls_server: TlsServer, tmp_path: Path
) -> None:
    state = tmp_path / "agent-state"
    env = {"HODEI_BOOTSTRAP_TOKEN": tls_server.token(), "PATH": "/usr/bin:/bin"}
    agent = subprocess.Popen(
        [str(BIN / "hodei-agent"), "--server", tls_server.server.address, "--name", "tls-1",
         "--ca-cert", str(tls_server.certs / "ca.crt"), "--state-dir", str(state)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        tls_server.server.wait_workers(1)
        out = tls_server.server.hodeictl("job", "run", "--", "echo", "over tls")
        assert (out.returncode, out.stdout) == (0, b"over tls\n"), out.stderr
        key = state / "agent.key"
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in state.iterdir()}
        print(f"state dir {oct(state.stat().st_mode & 0o777)}: {modes}")
        assert state.stat().st_mode & 0o077 == 0
        # Files (key, certificate, identity, lease...) 0600; directories (the jobs') 0700.
        assert all(mode == ("0o700" if (state / name).is_dir() else "0o600")
                   for name, mode in modes.items()), modes
        cert = x509.load_pem_x509_certificate((state / "agent.crt").read_bytes())
        [worker] = tls_server.server.list_workers()
        identity = pki.worker_identity((state / "agent.crt").read_bytes())
        assert identity is not None and identity.worker_id == worker.id
        # The private key never reached the server: its database holds no copy of it.
        key_body = b"".join(key.read_bytes().splitlines()[1:-1]).decode()
        with psycopg.connect(tls_server.server.database_url) as conn:
            dump = str(conn.execute("SELECT row_to_json(w)::text FROM workers w").fetchall())
        assert key_body not in dump and cert.serial_number
    finally:
        agent.terminate()
        agent.wait(timeout=60)


def test_docker_agents_get_the_ca_and_stream_over_mutual_tls(
    tmp_path: Path, database_url: str, docker_host: str, docker_client: Any,
) -> None:
    certs = tmp_path / "certs"
    assert certs_init(certs).returncode == 0
    provider = f"dk-tls-{uuid.uuid4().hex[:6]}"
    server = DockerServer(tmp_path, database_url, workers=1, slots=2, docker_host=docker_host,
                          provider_name=provider, extra_config=tls_config(certs, free_port()),
                          ca_cert=certs / "ca.crt")
    server.start(timeout=90)
    try:
        out = server.hodeictl("job", "run", "--", "sh", "-c", "echo in a container")
        assert (out.returncode, out.stdout) == (0, b"in a container\n"), (
            out.stderr.decode() + server.log_path.read_text())
        [container] = docker_client.containers.list(  # type: ignore[attr-defined]
            filters={"label": [f"io.hodei.provider={provider}"]})
        args = container.attrs["Args"]
        ca_path = args[args.index("--ca-cert") + 1]
        log = server.log_path.read_text()
        mutual = log.count("registered with certificate")
        print(f"docker agents registered with a certificate: {mutual}/1 (CA at {ca_path})")
        assert mutual == 1
    finally:
        server.stop()
