"""API authentication and authorisation, against a real server, real gRPC, real PostgreSQL.

Each row prints how many calls were refused and how many of those refusals the audit log
holds. One server (no workers: nothing here needs a job to run) serves the whole module.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import message_factory
from psycopg.conninfo import make_conninfo

import hodei_api.v1
from hodei_api.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from hodei_server.security import authz
from tests.e2e.harness import BIN, ServerProcess, create_api_token, hodeictl_argv

pytestmark = pytest.mark.e2e

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
JOBS = "/hodei.api.v1.JobService/"
TOKENS = "/hodei.api.v1.TokenService/"


# --- fixtures of this module ---------------------------------------------------------------


@pytest.fixture(scope="module")
def module_database(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = f"hodei_auth_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'.encode())
    try:
        yield make_conninfo(pg_admin_url, dbname=name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture(scope="module")
def server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("auth"), module_database, workers=0).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> dict[str, str]:
    """One token per role, plus a second submitter."""
    return {
        role: create_api_token(server.database_url, f"t-{role}", role)
        for role in ("viewer", "submitter", "operator", "admin")
    } | {"submitter2": create_api_token(server.database_url, "t-submitter2", "submitter")}


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as chan:
        yield chan


# --- helpers -------------------------------------------------------------------------------


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def refusal(call: Callable[[], Any]) -> grpc.RpcError:
    """The error a call ends with; fails the test if it succeeds."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call was allowed")


def audit_rows(url: str, after: int = 0) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT id, actor, action, target, allowed, detail FROM audit_log WHERE id > %s"
            " ORDER BY id", (after,)).fetchall()


def last_audit_id(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


def check_refusals(
    url: str, cases: list[tuple[str, Callable[[], Any], grpc.StatusCode, str]], label: str,
    actor: str | None = None,
) -> None:
    """Each case: (full method, call, expected status, text the message must hold)."""
    before = last_audit_id(url)
    refused = 0
    for method, call, code, text in cases:
        error = refusal(call)
        assert error.code() == code, (method, error.code(), error.details())
        assert text in (error.details() or ""), (method, error.details())
        assert "\n" not in (error.details() or "")
        refused += 1
    rows = [r for r in audit_rows(url, before) if not r["allowed"]]
    audited = 0
    for method, _, code, _ in cases:
        match = [r for r in rows if r["action"] == method and r["detail"]["status"] == code.name
                 and (actor is None or r["actor"] == actor)]
        audited += bool(match)
    n = len(cases)
    print(f"{label}: refused {refused}/{n}, audited {audited}/{n}")
    assert refused == n and audited == n


def api_calls(
    channel: grpc.Channel, metadata: list[tuple[str, str]]
) -> dict[str, Callable[[], Any]]:
    """One call of each guarded kind, with `metadata`."""
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    logs = logs_pb2_grpc.LogServiceStub(channel)
    workers = workers_pb2_grpc.WorkerServiceStub(channel)
    tokens = auth_pb2_grpc.TokenServiceStub(channel)
    some_id = str(uuid.uuid4())
    spec = jobs_pb2.JobSpec(command=["true"])
    return {
        JOBS + "SubmitJob": lambda: jobs.SubmitJob(
            jobs_pb2.SubmitJobRequest(spec=spec), metadata=metadata, timeout=10),
        JOBS + "SubmitJobs": lambda: jobs.SubmitJobs(
            jobs_pb2.SubmitJobsRequest(jobs=[jobs_pb2.SubmitJobRequest(spec=spec)]),
            metadata=metadata, timeout=10),
        JOBS + "GetJob": lambda: jobs.GetJob(
            jobs_pb2.GetJobRequest(id=some_id), metadata=metadata, timeout=10),
        JOBS + "ListJobs": lambda: jobs.ListJobs(
            jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=10),
        JOBS + "CancelJob": lambda: jobs.CancelJob(
            jobs_pb2.CancelJobRequest(id=some_id), metadata=metadata, timeout=10),
        JOBS + "RetryJob": lambda: jobs.RetryJob(
            jobs_pb2.RetryJobRequest(id=some_id), metadata=metadata, timeout=10),
        JOBS + "DeleteJob": lambda: jobs.DeleteJob(
            jobs_pb2.DeleteJobRequest(id=some_id), metadata=metadata, timeout=10),
        "/hodei.api.v1.LogService/StreamLogs": lambda: list(logs.StreamLogs(
            logs_pb2.StreamLogsRequest(job_id=some_id), metadata=metadata, timeout=10)),
        "/hodei.api.v1.WorkerService/ListWorkers": lambda: workers.ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=metadata, timeout=10),
        "/hodei.api.v1.WorkerService/ListProviders": lambda: workers.ListProviders(
            workers_pb2.ListProvidersRequest(), metadata=metadata, timeout=10),
        "/hodei.api.v1.WorkerService/GetServerInfo": lambda: workers.GetServerInfo(
            workers_pb2.GetServerInfoRequest(), metadata=metadata, timeout=10),
        "/hodei.api.v1.WorkerService/DrainWorker": lambda: workers.DrainWorker(
            workers_pb2.DrainWorkerRequest(id=some_id), metadata=metadata, timeout=10),
        TOKENS + "CreateToken": lambda: tokens.CreateToken(
            auth_pb2.CreateTokenRequest(name=f"x-{uuid.uuid4().hex[:8]}",
                                        role=auth_pb2.ROLE_ADMIN), metadata=metadata, timeout=10),
        TOKENS + "ListTokens": lambda: tokens.ListTokens(
            auth_pb2.ListTokensRequest(), metadata=metadata, timeout=10),
        TOKENS + "RevokeToken": lambda: tokens.RevokeToken(
            auth_pb2.RevokeTokenRequest(name="t-admin"), metadata=metadata, timeout=10),
        TOKENS + "WhoAmI": lambda: tokens.WhoAmI(
            auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=10),
        TOKENS + "ListAudit": lambda: tokens.ListAudit(
            auth_pb2.ListAuditRequest(), metadata=metadata, timeout=10),
    }


def every_api_method(
    channel: grpc.Channel, metadata: list[tuple[str, str]]
) -> dict[str, Callable[[], Any]]:
    """A call with an empty request to every method of every API service in the .proto files,
    so a service added later (secrets, say) is covered without editing this test."""
    calls: dict[str, Callable[[], Any]] = {}
    for info in pkgutil.iter_modules(hodei_api.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"hodei_api.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in authz.AGENT_SERVICES:
                continue
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                request_cls = message_factory.GetMessageClass(method.input_type)
                response_cls = message_factory.GetMessageClass(method.output_type)
                calls[path] = _raw_call(channel, path, request_cls, response_cls,
                                        method.client_streaming, method.server_streaming,
                                        metadata)
    return calls


def _raw_call(channel: grpc.Channel, path: str, request_cls: Any, response_cls: Any,
              client_streaming: bool, server_streaming: bool,
              metadata: list[tuple[str, str]]) -> Callable[[], Any]:
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    stub = kind[(client_streaming, server_streaming)](
        path, request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString)
    request = iter([request_cls()]) if client_streaming else request_cls()

    def call() -> Any:
        reply = stub(request, metadata=metadata, timeout=10)
        return list(reply) if server_streaming else reply

    return call


def submit(channel: grpc.Channel, token: str) -> jobs_pb2.Job:
    stub = jobs_pb2_grpc.JobServiceStub(channel)
    reply = stub.SubmitJob(jobs_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(command=["true"])),
                           metadata=bearer(token), timeout=10)
    return reply.job


def hodeictl(server: ServerProcess, *args: str, token: str | None = None,
             env: dict[str, str] | None = None,
             input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    base["HODEI_SERVER"] = server.address
    if token is not None:
        base["HODEI_TOKEN"] = token
    return subprocess.run([*hodeictl_argv(), *args], env={**base, **(env or {})},
                          capture_output=True, timeout=120, input=input)


# --- refusals ------------------------------------------------------------------------------


def test_every_api_call_without_a_token_is_refused_and_audited(
    server: ServerProcess, channel: grpc.Channel,
) -> None:
    calls = every_api_method(channel, [])
    assert set(api_calls(channel, [])) <= set(calls)
    cases = [(m, c, UNAUTHENTICATED, "needs an API token") for m, c in calls.items()]
    check_refusals(server.database_url, cases, "no token", actor="anonymous")


def test_forged_and_malformed_tokens_are_refused_and_audited(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    real = tokens["admin"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")  # right id, wrong secret
    unknown = "hodei_0123456789abcdef_" + "A" * 43
    cases = []
    for label, token, text in [("forged", forged, "unknown API token"),
                               ("unknown", unknown, "unknown API token"),
                               ("garbage", "not-a-token", "not a Hodei API token")]:
        call = api_calls(channel, bearer(token))[TOKENS + "ListTokens"]
        cases.append((TOKENS + "ListTokens", call, UNAUTHENTICATED, text))
        check_refusals(server.database_url, cases[-1:], f"{label} token", actor="anonymous")


WRONG_ROLE = [
    # (token's role, method, role it needs)
    ("viewer", JOBS + "SubmitJob", "submitter"),
    ("viewer", JOBS + "CancelJob", "submitter"),
    ("viewer", JOBS + "RetryJob", "submitter"),
    ("viewer", "/hodei.api.v1.WorkerService/DrainWorker", "operator"),
    ("submitter", "/hodei.api.v1.WorkerService/DrainWorker", "operator"),
    ("viewer", TOKENS + "CreateToken", "admin"),
    ("submitter", TOKENS + "CreateToken", "admin"),
    ("operator", TOKENS + "CreateToken", "admin"),
    ("operator", TOKENS + "ListTokens", "admin"),
    ("operator", TOKENS + "RevokeToken", "admin"),
    ("operator", TOKENS + "ListAudit", "admin"),
]


def test_wrong_role_is_refused_with_one_clear_line_and_audited(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    cases = [
        (method, api_calls(channel, bearer(tokens[role]))[method], DENIED,
         f"this call needs the {needed} role; token 't-{role}' has {role}")
        for role, method, needed in WRONG_ROLE
    ]
    check_refusals(server.database_url, cases, "wrong role")


def test_the_role_just_below_each_methods_minimum_is_refused(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    """Driven by the role table itself: rows added for new services are tested at once."""
    calls: dict[str, dict[str, Callable[[], Any]]] = {}
    cases = []
    for method, needed in authz.METHOD_ROLES.items():
        if needed == authz.Role.VIEWER:
            continue
        below = str(authz.Role(needed - 1))
        if below not in calls:
            calls[below] = every_api_method(channel, bearer(tokens[below]))
        cases.append((method, calls[below][method], DENIED,
                      f"this call needs the {needed} role; token 't-{below}' has {below}"))
    check_refusals(server.database_url, cases, "role just below the minimum")


def test_revoked_and_expired_tokens_are_refused(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    url = server.database_url
    revoked = create_api_token(url, "soon-revoked", "admin")
    expired = create_api_token(url, "soon-expired", "admin", ttl_seconds=3600)
    whoami = auth_pb2_grpc.TokenServiceStub(channel).WhoAmI
    assert whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(revoked), timeout=10).name == \
        "soon-revoked"
    auth_pb2_grpc.TokenServiceStub(channel).RevokeToken(
        auth_pb2.RevokeTokenRequest(name="soon-revoked"), metadata=bearer(tokens["admin"]),
        timeout=10)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'"
                     " WHERE name = 'soon-expired'")
    cases = [
        (TOKENS + "WhoAmI", lambda: whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(revoked),
                                            timeout=10), UNAUTHENTICATED, "was revoked"),
        (TOKENS + "WhoAmI", lambda: whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(expired),
                                            timeout=10), UNAUTHENTICATED, "expired at"),
    ]
    check_refusals(url, cases[:1], "revoked token", actor="token:soon-revoked")
    check_refusals(url, cases[1:], "expired token", actor="token:soon-expired")


def test_a_revocation_by_another_replica_is_seen_at_once(
    server: ServerProcess, channel: grpc.Channel,
) -> None:
    """Servers cache token rows for a few seconds; a revocation made anywhere (here: the
    revoke statement run on the database, as another replica runs it) reaches every server
    through a notification, well before that cache would expire."""
    from hodei_server.security.apitokens import CACHE_SECONDS
    from hodei_server.store.sqlfiles import query

    url = server.database_url
    token = create_api_token(url, "revoked-elsewhere", "viewer")
    whoami = auth_pb2_grpc.TokenServiceStub(channel).WhoAmI
    assert whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(token), timeout=10).name == \
        "revoked-elsewhere"  # now cached by the server
    with psycopg.connect(url) as conn:
        conn.execute(query("revoke_api_token"), {"name": "revoked-elsewhere"})
    revoked_at = time.monotonic()
    while True:
        try:
            whoami(auth_pb2.WhoAmIRequest(), metadata=bearer(token), timeout=10)
        except grpc.RpcError as error:
            assert error.code() == UNAUTHENTICATED and "was revoked" in (error.details() or "")
            break
        assert time.monotonic() - revoked_at < CACHE_SECONDS / 2, "the revocation went unheard"
        time.sleep(0.01)
    print(f"revocation seen after {1000 * (time.monotonic() - revoked_at):.0f} ms "
          f"(cache: {CACHE_SECONDS:.0f} s)")


def _register_worker(server: ServerProcess, channel: grpc.Channel) -> tuple[str, str]:
    minted = subprocess.run(
        [str(BIN / "hodei-server"), "token", "create", "--database-url", server.database_url],
        capture_output=True, timeout=60, check=True)
    bootstrap = minted.stdout.decode().strip()
    reply = agent_pb2_grpc.WorkerAgentServiceStub(channel).Register(
        agent_pb2.RegisterRequest(bootstrap_token=bootstrap, name="auth-test-worker",
                                  capacity=workers_pb2.Capacity(slots=1)), timeout=10)
    return reply.worker_id, reply.credential


def test_an_api_token_is_refused_on_the_agent_service(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    agents = agent_pb2_grpc.WorkerAgentServiceStub(channel)
    admin = tokens["admin"]

    def connect() -> None:
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello())
        for _ in agents.Connect(iter([hello]), metadata=bearer(admin), timeout=10):
            pass

    def register() -> None:
        agents.Register(agent_pb2.RegisterRequest(bootstrap_token=admin, name="sneaky",
                                                  capacity=workers_pb2.Capacity(slots=1)),
                        timeout=10)

    agent = "/hodei.api.v1.WorkerAgentService/"
    check_refusals(server.database_url, [
        (agent + "Connect", connect, DENIED, "API tokens are not accepted on the agent service"),
        (agent + "Register", register, DENIED, "API tokens are not accepted on the agent service"),
    ], "API token on the agent service")


def test_an_agent_credential_is_refused_on_the_api(
    server: ServerProcess, channel: grpc.Channel,
) -> None:
    worker_id, credential = _register_worker(server, channel)
    as_agent = [("authorization", f"Bearer {credential}"), ("x-hodei-worker-id", worker_id)]
    calls = every_api_method(channel, as_agent)
    cases = [(m, c, DENIED, "an agent credential can only be used on the agent service")
             for m, c in calls.items()]
    check_refusals(server.database_url, cases, "agent credential on the API",
                   actor=f"worker:{worker_id}")
    # Without its worker-id header the credential is simply not an API token.
    bare = api_calls(channel, bearer(credential))[JOBS + "ListJobs"]
    check_refusals(server.database_url, [(JOBS + "ListJobs", bare, UNAUTHENTICATED,
                                          "not a Hodei API token")], "bare agent credential")


def test_a_submitter_acts_only_on_its_own_jobs(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    mine = submit(channel, tokens["submitter"])
    theirs = submit(channel, tokens["submitter2"])
    assert (mine.submitted_by, theirs.submitted_by) == ("t-submitter", "t-submitter2")
    as_first = bearer(tokens["submitter"])
    check_refusals(server.database_url, [
        (JOBS + "CancelJob", lambda: jobs.CancelJob(jobs_pb2.CancelJobRequest(id=theirs.id),
                                                    metadata=as_first, timeout=10),
         DENIED, "may cancel only the jobs it submitted"),
        (JOBS + "RetryJob", lambda: jobs.RetryJob(jobs_pb2.RetryJobRequest(id=theirs.id),
                                                  metadata=as_first, timeout=10),
         DENIED, "may retry only the jobs it submitted"),
    ], "submitter on another token's job", actor="token:t-submitter")
    assert jobs.GetJob(jobs_pb2.GetJobRequest(id=theirs.id), metadata=as_first,
                       timeout=10).state == jobs_pb2.JOB_STATE_PENDING
    # Its own job: allowed; another's, for an operator: allowed.
    own = jobs.CancelJob(jobs_pb2.CancelJobRequest(id=mine.id), metadata=as_first, timeout=10)
    assert own.changed
    other = jobs.CancelJob(jobs_pb2.CancelJobRequest(id=theirs.id),
                           metadata=bearer(tokens["operator"]), timeout=10)
    assert other.changed
    with psycopg.connect(server.database_url) as conn:
        actors = {r[0] for r in conn.execute(
            "SELECT actor FROM events WHERE aggregate_id = ANY(%s) AND type = 'job.cancelled'",
            ([mine.id, theirs.id],))}
    assert actors <= {"token:t-submitter", "token:t-operator"}


def test_every_role_may_do_what_its_role_allows(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    """The other side of the table: what a role may do is not refused."""
    allowed = 0
    checks = [
        ("viewer", JOBS + "ListJobs"), ("viewer", "/hodei.api.v1.WorkerService/ListWorkers"),
        ("viewer", "/hodei.api.v1.WorkerService/ListProviders"), ("viewer", TOKENS + "WhoAmI"),
        ("submitter", JOBS + "SubmitJob"), ("admin", TOKENS + "ListTokens"),
        ("admin", TOKENS + "CreateToken"), ("admin", TOKENS + "ListAudit"),
    ]
    for role, method in checks:
        api_calls(channel, bearer(tokens[role]))[method]()
        allowed += 1
    print(f"allowed by role: {allowed}/{len(checks)}")


# --- token lifecycle, hodeictl, audit ------------------------------------------------------


def test_token_lifecycle_through_hodeictl_is_audited_without_secrets(
    server: ServerProcess, tokens: dict[str, str], tmp_path: Path,
) -> None:
    admin = tokens["admin"]
    created = hodeictl(server, "token", "create", "ci", "--role", "submitter", "--expires",
                       "30d", token=admin)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.decode().strip()
    assert secret.startswith("hodei_") and "\n" not in secret
    assert b"shown only this once" in created.stderr

    listing = hodeictl(server, "token", "list", "-o", "json", token=admin)
    assert listing.returncode == 0, listing.stderr
    assert secret.encode() not in listing.stdout
    [ci] = [t for t in json.loads(listing.stdout) if t["name"] == "ci"]
    assert ci["role"] == "submitter" and ci["created_by"] == "token:t-admin" and ci["expires_at"]

    # The context keeps the token in a file only its user reads; hodeictl sends it.
    config = tmp_path / "config.toml"
    env = {"HODEI_CONFIG": str(config)}
    set_ctx = hodeictl(server, "context", "set", "ci", "--server", server.address,
                       "--token-stdin", env=env, input=secret.encode() + b"\n")
    assert set_ctx.returncode == 0, set_ctx.stderr
    assert secret.encode() not in set_ctx.stdout + set_ctx.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    in_ctx = {**env, "HODEI_SERVER": "", "HODEI_CONTEXT": "ci"}
    who = hodeictl(server, "whoami", env=in_ctx)
    assert who.stdout.decode().strip() == "ci (submitter)", who.stderr
    submitted = hodeictl(server, "job", "submit", "--", "true", env=in_ctx)
    assert submitted.returncode == 0, submitted.stderr
    shown = hodeictl(server, "job", "get", submitted.stdout.decode().strip(), env=in_ctx)
    assert "Submitted by" in shown.stdout.decode() and "ci" in shown.stdout.decode()

    denied = hodeictl(server, "token", "list", env=in_ctx)
    assert denied.returncode == 77
    assert denied.stderr.decode().count("\n") == 1
    assert "needs the admin role; token 'ci' has submitter" in denied.stderr.decode()

    revoked = hodeictl(server, "token", "revoke", "ci", token=admin)
    assert revoked.returncode == 0, revoked.stderr
    after = hodeictl(server, "job", "list", env=in_ctx)
    assert after.returncode == 77 and b"was revoked" in after.stderr

    with psycopg.connect(server.database_url) as conn:
        text = " ".join(str(r) for r in conn.execute("SELECT * FROM audit_log"))
        lifecycle = conn.execute(
            "SELECT action FROM audit_log WHERE target = 'ci' AND allowed ORDER BY id").fetchall()
    # A token is hodei_<id>_<secret>, and the secret (URL-safe base64) may itself hold "_".
    leaked = [t for t in [secret, *tokens.values()]
              if t in text or t.split("_", 2)[2] in text]
    assert [a for (a,) in lifecycle] == [TOKENS + "CreateToken", TOKENS + "RevokeToken"]
    shown = hodeictl(server, "audit", "list", "--refused", "--limit", "1000", "-o", "json",
                     token=admin)
    assert shown.returncode == 0, shown.stderr
    refusals = json.loads(shown.stdout)
    assert any(r["actor"] == "token:ci" and "needs the admin role" in r["reason"]
               for r in refusals)
    assert not any(t in shown.stdout.decode() for t in [secret, *tokens.values()])
    print(f"token create/revoke audited {len(lifecycle)}/2, secrets in the audit log: "
          f"{len(leaked)}")
    assert not leaked


def test_hodeictl_without_a_token_says_how_to_get_one(server: ServerProcess) -> None:
    out = hodeictl(server, "job", "list")
    assert out.returncode == 77
    message = out.stderr.decode()
    assert message.count("\n") == 1
    assert "needs an API token" in message and "hodeictl token create" in message
    assert "--token-stdin" in message


def test_first_admin_from_the_server_command_line(
    server: ServerProcess, channel: grpc.Channel,
) -> None:
    out = subprocess.run(
        [str(BIN / "hodei-server"), "token", "create", "--api", "--role", "admin",
         "--name", "first-admin", "--database-url", server.database_url],
        capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.decode().strip()
    assert b"shown only this once" in out.stderr
    reply = auth_pb2_grpc.TokenServiceStub(channel).WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=bearer(token), timeout=10)
    assert (reply.name, reply.role) == ("first-admin", auth_pb2.ROLE_ADMIN)
    again = subprocess.run(
        [str(BIN / "hodei-server"), "token", "create", "--api", "--role", "admin",
         "--name", "first-admin", "--database-url", server.database_url],
        capture_output=True, timeout=60)
    assert again.returncode == 1 and b"revoke it first" in again.stderr
    with psycopg.connect(server.database_url) as conn:
        stored = conn.execute("SELECT secret_hash FROM api_tokens WHERE name = 'first-admin'"
                              ).fetchone()
    assert stored is not None and token.split("_", 2)[2].encode() not in bytes(stored[0])


def test_the_embedded_stack_hands_its_user_an_admin_token(
    tmp_path: Path, database_url: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env |= {"HODEI_HOME": str(tmp_path / "home"), "HODEI_CONFIG": str(tmp_path / "c.toml"),
            "HODEI_DATABASE_URL": database_url}
    try:
        who = subprocess.run([*hodeictl_argv(), "whoami"], env=env, capture_output=True,
                             timeout=180)
        assert who.returncode == 0, who.stderr
        assert who.stdout.decode().strip() == "local-admin (admin)"
        stack_file = tmp_path / "home" / "stack.json"
        assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
        address = json.loads(stack_file.read_text())["address"]
        # Another local user, without the file, gets nothing from the loopback port.
        with grpc.insecure_channel(address) as chan:
            error = refusal(lambda: jobs_pb2_grpc.JobServiceStub(chan).ListJobs(
                jobs_pb2.ListJobsRequest(), timeout=10))
        assert error.code() == UNAUTHENTICATED
    finally:
        subprocess.run([*hodeictl_argv(), "down"], env=env, capture_output=True, timeout=90)


def test_audit_list_finds_a_call_by_its_method_name_alone(
    server: ServerProcess, channel: grpc.Channel, tokens: dict[str, str],
) -> None:
    """`audit list --action DrainWorker` finds the refusals of that call, whose rows carry
    the full method path, and an event name still matches whole."""
    stub = workers_pb2_grpc.WorkerServiceStub(channel)
    refusal(lambda: stub.DrainWorker(workers_pb2.DrainWorkerRequest(id=str(uuid.uuid4())),
                                     metadata=bearer(tokens["viewer"]), timeout=10))
    for action in ("DrainWorker", "/hodei.api.v1.WorkerService/DrainWorker"):
        listed = hodeictl(server, "audit", "list", "--action", action, "--limit", "1000",
                          "-o", "json", token=tokens["admin"])
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert rows and {r["action"] for r in rows} == {"/hodei.api.v1.WorkerService/DrainWorker"}
    # A part of a name is no match: "Worker" names no call.
    partial = hodeictl(server, "audit", "list", "--action", "Worker", "-o", "json",
                       token=tokens["admin"])
    assert partial.returncode == 0 and json.loads(partial.stdout) == []
