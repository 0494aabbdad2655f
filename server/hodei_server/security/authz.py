"""Who may call what: the one role table, and the checks that enforce it on every call.

Every method of the API services needs an API token of at least the role in `METHOD_ROLES`;
a method that is in no table is refused, so a new RPC cannot be left open by forgetting it.
The agent service takes agent credentials only (its servicer checks them): an API token is
refused there, just as an agent credential is refused on the API. Every refusal is written
to the audit log (never the credential itself). The interceptor that runs these checks
before each call is `hodei_server.api.interceptors.AuthInterceptor`.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid

from hodei_server.errors import HodeiError, PermissionDenied, Unauthenticated
from hodei_server.security import apitokens, audit
from hodei_server.security.apitokens import Principal, Role, TokenStore
from hodei_server.store.db import Pool

log = logging.getLogger(__name__)

_JOBS = "/hodei.api.v1.JobService/"
_LOGS = "/hodei.api.v1.LogService/"
_WORKERS = "/hodei.api.v1.WorkerService/"
_TOKENS = "/hodei.api.v1.TokenService/"
_SECRETS = "/hodei.api.v1.SecretService/"
_TEMPLATES = "/hodei.api.v1.TemplateService/"
_SCHEDULES = "/hodei.api.v1.ScheduleService/"
_EVENTS = "/hodei.api.v1.EventService/"

# The minimum role of every API method. Submitters may cancel, retry or delete only the jobs they
# submitted (checked by the servicer with `require_owner`); operators and admins, any job.
# Changing a secret is an administrator's act; its names and metadata are an operator's to
# see. No method returns a secret's value. A template is a job that runs again and again,
# unattended when it has a schedule: defining, changing, enabling and deleting one, and
# suspending or resuming its schedule, is an operator's act; running one is a submitter's,
# like submitting the job it holds.
METHOD_ROLES: dict[str, Role] = {
    _JOBS + "SubmitJob": Role.SUBMITTER,
    _JOBS + "SubmitJobs": Role.SUBMITTER,
    _JOBS + "GetJob": Role.VIEWER,
    _JOBS + "ListJobs": Role.VIEWER,
    _JOBS + "CancelJob": Role.SUBMITTER,
    _JOBS + "RetryJob": Role.SUBMITTER,
    _JOBS + "DeleteJob": Role.SUBMITTER,
    _JOBS + "CountJobs": Role.VIEWER,
    _LOGS + "StreamLogs": Role.VIEWER,
    _WORKERS + "ListWorkers": Role.VIEWER,
    _WORKERS + "ListProviders": Role.VIEWER,
    _WORKERS + "GetServerInfo": Role.VIEWER,
    _WORKERS + "DrainWorker": Role.OPERATOR,
    _TOKENS + "WhoAmI": Role.VIEWER,
    _TOKENS + "CreateToken": Role.ADMIN,
    _TOKENS + "RevokeToken": Role.ADMIN,
    _TOKENS + "ListTokens": Role.ADMIN,
    _TOKENS + "ListAudit": Role.ADMIN,
    _SECRETS + "SetSecret": Role.ADMIN,
    _SECRETS + "DeleteSecret": Role.ADMIN,
    _SECRETS + "ListSecrets": Role.OPERATOR,
    _TEMPLATES + "CreateTemplate": Role.OPERATOR,
    _TEMPLATES + "UpdateTemplate": Role.OPERATOR,
    _TEMPLATES + "GetTemplate": Role.VIEWER,
    _TEMPLATES + "ListTemplates": Role.VIEWER,
    _TEMPLATES + "DisableTemplate": Role.OPERATOR,
    _TEMPLATES + "EnableTemplate": Role.OPERATOR,
    _TEMPLATES + "DeleteTemplate": Role.OPERATOR,
    _TEMPLATES + "RunTemplate": Role.SUBMITTER,
    _SCHEDULES + "ListSchedules": Role.VIEWER,
    _SCHEDULES + "SuspendSchedule": Role.OPERATOR,
    _SCHEDULES + "ResumeSchedule": Role.OPERATOR,
    # Watching is reading; audit events reach administrators only (the servicer filters).
    _JOBS + "WatchJobs": Role.VIEWER,
    _WORKERS + "WatchWorkers": Role.VIEWER,
    _EVENTS + "WatchEvents": Role.VIEWER,
}

# The role that may act on any job, not only its own.
ANY_JOB_ROLE = Role.OPERATOR

# Agent credentials only (checked by the agent servicer); API tokens are refused.
AGENT_SERVICES = frozenset({"hodei.api.v1.WorkerAgentService"})

# Open to anyone who can connect: they reveal no job, worker or token.
PUBLIC_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

WORKER_ID_HEADER = "x-hodei-worker-id"

# The token of the call being served: set by the interceptor before the servicer runs.
CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "hodei_principal", default=None
)


def principal() -> Principal:
    """The token of the call being served (set by the interceptor before the servicer runs)."""
    found = CALLER.get()
    if found is None:
        raise RuntimeError("no authenticated principal: is the AuthInterceptor installed?")
    return found


def service_of(method: str) -> str:
    return method.strip("/").split("/", 1)[0]


class Refused(HodeiError):
    """Refused; `actor` is who asked, as the audit log names it."""

    def __init__(self, message: str, actor: str = "anonymous") -> None:
        super().__init__(message)
        self.actor = actor


class CredentialRefused(Refused, Unauthenticated):
    """No valid credential came with the call."""


class RoleRefused(Refused, PermissionDenied):
    """The caller's credential may not do this."""


def api_actor(credential: str) -> str:
    """An audit actor for an API token used where it does not belong: its id, never more."""
    parsed = apitokens.parse(credential)
    return f"api-token:{parsed[0]}" if parsed else "anonymous"


def _worker_actor(metadata: dict[str, str]) -> str:
    """The worker a call claims to come from (a UUID), for the audit log; not verified."""
    try:
        return f"worker:{uuid.UUID(metadata[WORKER_ID_HEADER])}"
    except ValueError:
        return "anonymous"


def _bearer(metadata: dict[str, str]) -> str:
    value = metadata.get("authorization", "").strip()
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


class Authorizer:
    """Authenticates API tokens and checks roles; records every refusal."""

    # last_used_at is written at most this often per token and replica.
    TOUCH_INTERVAL = 30.0

    def __init__(self, pool: Pool, tokens: TokenStore) -> None:
        self.pool = pool
        self.tokens = tokens
        self._touched: dict[str, float] = {}

    async def authenticate(self, metadata: dict[str, str]) -> Principal:
        if WORKER_ID_HEADER in metadata:
            raise RoleRefused("an agent credential can only be used on the agent service; "
                              "API calls need an API token", _worker_actor(metadata))
        credential = _bearer(metadata)
        if not credential:
            raise CredentialRefused(
                "this call needs an API token (metadata 'authorization: Bearer hodei_…'); "
                "none was sent")
        parsed = apitokens.parse(credential)
        if parsed is None:
            raise CredentialRefused("the credential sent is not a Hodei API token")
        token_id, secret = parsed
        row = await self.tokens.get_cached(token_id)
        if row is None or not apitokens.secret_matches(row, secret):
            raise CredentialRefused("unknown API token")
        actor = f"token:{row['name']}"
        if row["revoked_at"] is not None:
            raise CredentialRefused(f"API token '{row['name']}' was revoked", actor)
        if apitokens.is_expired(row):
            raise CredentialRefused(
                f"API token '{row['name']}' expired at {apitokens.expiry_text(row)}", actor)
        await self._touch(token_id)
        return Principal(token_id=token_id, name=row["name"], role=Role.parse(row["role"]))

    async def _touch(self, token_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(token_id, -self.TOUCH_INTERVAL) >= self.TOUCH_INTERVAL:
            self._touched[token_id] = now
            await self.tokens.touch(token_id)

    async def authorize(self, method: str, metadata: dict[str, str]) -> Principal | None:
        """The caller's principal (None on agent services), or Refused."""
        service = service_of(method)
        if service in AGENT_SERVICES:
            credential = _bearer(metadata)
            if apitokens.looks_like_api_token(credential):
                raise RoleRefused("API tokens are not accepted on the agent service; an "
                                  "agent authenticates with its own credential",
                                  api_actor(credential))
            return None
        needed = METHOD_ROLES.get(method)
        if needed is None:
            raise RoleRefused(f"{method} is in no role table, so nobody may call it", "anonymous")
        who = await self.authenticate(metadata)
        if who.role < needed:
            raise RoleRefused(f"this call needs the {needed} role; token '{who.name}' has "
                              f"{who.role}", who.actor)
        return who

    async def record_refusal(
        self, method: str, refusal: Refused, peer: str, status: str, target: str = ""
    ) -> None:
        """Write the refusal to the audit log; `status` is the one the caller is told."""
        log.info("refused %s to %s: %s", method, refusal.actor, refusal.message)
        await audit.record_now(self.pool, refusal.actor, method, target=target, allowed=False,
                               detail={"reason": refusal.message, "peer": peer,
                                       "status": status})

    def check_owner(self, method: str, submitted_by: str, job_id: str) -> None:
        """Submitters act only on their own jobs; operators and admins on any (RoleRefused
        otherwise)."""
        who = principal()
        if who.role >= ANY_JOB_ROLE or (submitted_by and submitted_by == who.name):
            return
        verb = method.rsplit("/", 1)[-1].removesuffix("Job").lower()
        owner = f"token '{submitted_by}'" if submitted_by else "no token"
        raise RoleRefused(f"token '{who.name}' ({who.role}) may {verb} only the jobs it "
                          f"submitted; job {job_id} was submitted by {owner} (the "
                          f"{ANY_JOB_ROLE} role may {verb} any job)", who.actor)
