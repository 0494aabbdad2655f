-- Hodei schema: the result of applying every migration in order (a test checks it).

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    spec            bytea NOT NULL,
    state           text NOT NULL,
    attempt         integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 1,
    worker_id       uuid,
    exit_code       integer,
    reason          text NOT NULL DEFAULT '',
    idempotency_key text UNIQUE,
    labels          jsonb NOT NULL DEFAULT '{}'::jsonb,
    selector        jsonb NOT NULL DEFAULT '{}'::jsonb,
    cpus            double precision NOT NULL DEFAULT 0,
    memory_mb       bigint NOT NULL DEFAULT 0,
    timeout_seconds double precision NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL DEFAULT now(),
    cancel_requested_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    retry_on        text[] NOT NULL DEFAULT '{lost}',
    backoff_seconds double precision NOT NULL DEFAULT 1,
    max_backoff_seconds double precision NOT NULL DEFAULT 60
);

-- The queue is the jobs table: only PENDING rows are in this index.
CREATE INDEX jobs_pending_idx ON jobs (not_before, created_at) WHERE state = 'PENDING';
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_active_worker_idx ON jobs (worker_id) WHERE state IN ('ASSIGNED', 'RUNNING');

CREATE TABLE job_attempts (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker_id   uuid NOT NULL,
    state       text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    exit_code   integer,
    reason      text NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE workers (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    hostname          text NOT NULL DEFAULT '',
    provider          text NOT NULL DEFAULT '',
    labels            jsonb NOT NULL DEFAULT '{}'::jsonb,
    slots             integer NOT NULL,
    cpus              double precision NOT NULL DEFAULT 0,
    memory_mb         bigint NOT NULL DEFAULT 0,
    state             text NOT NULL,
    credential_hash   bytea NOT NULL,
    agent_version     text NOT NULL DEFAULT '',
    server_id         text,
    metrics           jsonb NOT NULL DEFAULT '{}'::jsonb,
    running_jobs      integer NOT NULL DEFAULT 0,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workers_live_idx ON workers (last_heartbeat_at)
    WHERE state NOT IN ('TERMINATED', 'LOST');

CREATE TABLE bootstrap_tokens (
    token_hash  bytea PRIMARY KEY,
    provider    text NOT NULL DEFAULT '',
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    worker_id   uuid
);

CREATE TABLE events (
    id             bigserial PRIMARY KEY,
    type           text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor          text NOT NULL DEFAULT '',
    correlation_id text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_aggregate_idx ON events (aggregate_type, aggregate_id, id);

CREATE TABLE job_logs (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    integer NOT NULL,
    seq        bigint NOT NULL,
    stream     smallint NOT NULL,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL DEFAULT '',
    allowed    boolean NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_at_idx ON audit_log (at);

-- API tokens: "hodei_<id>_<secret>"; looked up by id, the secret compared by its sha256.
CREATE TABLE api_tokens (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'submitter', 'operator', 'admin')),
    secret_hash  bytea NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- A name belongs to one live token; revoking it frees the name for a successor.
CREATE UNIQUE INDEX api_tokens_live_name_idx ON api_tokens (name) WHERE revoked_at IS NULL;

-- The name of the token that submitted each job.
ALTER TABLE jobs ADD COLUMN submitted_by text NOT NULL DEFAULT '';

-- Agents' client certificates: the serial a worker must present on its stream, and the one
-- before it (still accepted while the agent rotates).
ALTER TABLE workers ADD COLUMN cert_serial text;
ALTER TABLE workers ADD COLUMN prev_cert_serial text;
ALTER TABLE workers ADD COLUMN cert_not_after timestamptz;

CREATE TABLE secrets (
    name       text PRIMARY KEY,
    key_id     text NOT NULL,
    nonce      bytea NOT NULL,
    ciphertext bytea NOT NULL,
    size_bytes integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT ''
);
