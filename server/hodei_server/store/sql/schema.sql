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
-- `job list --state S`: newest first within one state, whatever the other states hold.
CREATE INDEX jobs_state_created_idx ON jobs (state, created_at DESC, id DESC);

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
    -- NULL on insert: the job's (hodei_event_correlation)
    correlation_id text NOT NULL,
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

-- Live feeds: events in the order their transactions settle, a correlation id carried by
-- every event a job causes, the audit trail in the same feed, and one wake-up a statement.
--
-- `txid` is the writing transaction's id. Once every transaction older than a reader's
-- snapshot xmin has ended, no event with a smaller txid can appear any more: a watcher that
-- reads in (txid, id) order only up to that horizon never skips an event committed late and
-- never sees one twice (hodei_server.store.events).
ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_txid_idx ON events (txid, id);
CREATE INDEX events_created_idx ON events (created_at);

-- Set by the submitter (or its x-correlation-id metadata); else the idempotency key.
ALTER TABLE jobs ADD COLUMN correlation_id text NOT NULL DEFAULT '';

-- A job's event that names no correlation id takes the job's; any other event none. The
-- statements that write a job's events name its id (the job's row is at hand there): the
-- trigger runs only for an insert that names none.
CREATE FUNCTION hodei_event_correlation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.correlation_id := '';
    IF NEW.aggregate_type = 'job'
       AND NEW.aggregate_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        NEW.correlation_id := coalesce(
            (SELECT j.correlation_id FROM jobs j WHERE j.id = NEW.aggregate_id::uuid), '');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_correlation BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.correlation_id IS NULL) EXECUTE FUNCTION hodei_event_correlation();

-- The replicas that have live watchers, each until its registration lapses.
CREATE TABLE event_watchers (
    server_id text PRIMARY KEY,
    until     timestamptz NOT NULL
);

-- Watchers on every replica wake once a statement that wrote events commits. Only while
-- some replica has live watchers: notifying transactions commit one at a time (PostgreSQL
-- serialises them), a price not worth paying for nobody.
CREATE FUNCTION hodei_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM event_watchers WHERE until > now()) THEN
        PERFORM pg_notify('hodei_events', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION hodei_events_notify();

-- Every audit row is an event too ("audit.<action>"), so one feed answers who did what.
CREATE FUNCTION hodei_audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    VALUES ('audit.' || NEW.action, 'audit', NEW.target,
            NEW.detail || jsonb_build_object('allowed', NEW.allowed, 'audit_id', NEW.id),
            NEW.actor);
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_event AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hodei_audit_event();

-- Dependencies, indexed jobs, failure policies, clean-up after a while, and job templates
-- with their versions, schedules, ticks and run history.
ALTER TABLE jobs
    ADD COLUMN parent_id uuid REFERENCES jobs (id) ON DELETE CASCADE,
    ADD COLUMN job_index integer,
    ADD COLUMN completions integer NOT NULL DEFAULT 0,
    ADD COLUMN parallelism integer NOT NULL DEFAULT 0,
    ADD COLUMN failure_policy jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN fails_parent boolean NOT NULL DEFAULT false,
    ADD COLUMN has_followups boolean NOT NULL DEFAULT false,
    ADD COLUMN ttl_after_finished_seconds double precision,
    ADD COLUMN template_id uuid,
    ADD COLUMN template_name text,
    ADD COLUMN template_version integer,
    ADD COLUMN parameters jsonb,
    ADD COLUMN scheduled_at timestamptz;

-- What the leader looks at: jobs waiting, indexed jobs running, jobs to delete one day.
CREATE INDEX jobs_blocked_idx ON jobs (created_at) WHERE state = 'BLOCKED';
CREATE INDEX jobs_parent_idx ON jobs (parent_id, job_index) WHERE parent_id IS NOT NULL;
CREATE INDEX jobs_indexed_running_idx ON jobs (created_at)
    WHERE state = 'RUNNING' AND completions > 0;
CREATE INDEX jobs_ttl_idx ON jobs (finished_at) WHERE ttl_after_finished_seconds IS NOT NULL;
CREATE INDEX jobs_template_idx ON jobs (template_id, finished_at) WHERE template_id IS NOT NULL;

CREATE TABLE job_dependencies (
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    depends_on uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    condition  text NOT NULL CHECK (condition IN ('succeeded', 'finished', 'failed')),
    PRIMARY KEY (job_id, depends_on)
);

CREATE INDEX job_dependencies_on_idx ON job_dependencies (depends_on);

CREATE TABLE job_templates (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    version    integer NOT NULL,
    disabled   boolean NOT NULL DEFAULT false,
    -- How many succeeded and failed runs keep their job; NULL: all.
    keep_succeeded integer,
    keep_failed    integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    updated_by text NOT NULL DEFAULT ''
);

-- Every version of every template, kept: a run names the one it was made from.
CREATE TABLE job_template_versions (
    template_id uuid NOT NULL REFERENCES job_templates (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    spec        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT '',
    PRIMARY KEY (template_id, version)
);

-- A template's schedule: every tick up to `cursor_at` is decided; `next_run_at` is the
-- next one.
CREATE TABLE schedules (
    template_id        uuid PRIMARY KEY REFERENCES job_templates (id) ON DELETE CASCADE,
    cron               text NOT NULL,
    timezone           text NOT NULL DEFAULT '',
    starting_deadline_seconds double precision,
    concurrency        text NOT NULL CHECK (concurrency IN ('allow', 'forbid', 'replace')),
    suspended          boolean NOT NULL DEFAULT false,
    cursor_at          timestamptz NOT NULL,
    next_run_at        timestamptz NOT NULL,
    started            bigint NOT NULL DEFAULT 0,
    missed             bigint NOT NULL DEFAULT 0,
    skipped            bigint NOT NULL DEFAULT 0,
    last_scheduled_at  timestamptz,
    last_job_id        uuid,
    last_missed_at     timestamptz,
    last_missed_reason text NOT NULL DEFAULT '',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT suspended;

-- Exactly one decision, hence at most one run, per tick of a schedule, whichever replica
-- leads and however often the leader changes.
CREATE TABLE schedule_ticks (
    template_id  uuid NOT NULL REFERENCES job_templates (id) ON DELETE CASCADE,
    scheduled_at timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('started', 'skipped', 'missed')),
    job_id       uuid,
    reason       text NOT NULL DEFAULT '',
    decided_at   timestamptz NOT NULL DEFAULT now(),
    decided_by   text NOT NULL DEFAULT '',
    PRIMARY KEY (template_id, scheduled_at)
);

-- A template's runs, kept when their jobs are deleted (history limits, TTL): its counts,
-- success rate and durations come from here.
CREATE TABLE template_runs (
    job_id       uuid PRIMARY KEY,
    template_id  uuid NOT NULL REFERENCES job_templates (id) ON DELETE CASCADE,
    version      integer NOT NULL,
    parameters   jsonb NOT NULL DEFAULT '{}'::jsonb,
    scheduled_at timestamptz,
    submitted_by text NOT NULL DEFAULT '',
    state        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);

CREATE INDEX template_runs_template_idx ON template_runs (template_id, created_at DESC);
CREATE INDEX template_runs_open_idx ON template_runs (template_id) WHERE finished_at IS NULL;

-- The `ssh` provider's hosts (`hodeictl host ...`); host_key/fingerprint: the pinned key.
CREATE TABLE ssh_hosts (
    name          text PRIMARY KEY,
    address       text NOT NULL,
    port          integer NOT NULL DEFAULT 22 CHECK (port BETWEEN 1 AND 65535),
    username      text NOT NULL,
    key_path      text NOT NULL DEFAULT '',
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb,
    jump          text NOT NULL DEFAULT '',
    sudo          boolean NOT NULL DEFAULT false,
    host_key_mode text NOT NULL DEFAULT 'known_hosts'
                  CHECK (host_key_mode IN ('known_hosts', 'pinned', 'tofu')),
    host_key      text NOT NULL DEFAULT '',
    fingerprint   text NOT NULL DEFAULT '',
    state         text NOT NULL DEFAULT 'registered',
    service       text NOT NULL DEFAULT '',
    -- The provider that bootstrapped it; '' for `hodeictl host bootstrap`.
    provider      text NOT NULL DEFAULT '',
    agent_version text NOT NULL DEFAULT '',
    worker_name   text NOT NULL DEFAULT '',
    last_error    text NOT NULL DEFAULT '',
    last_contact  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Pending jobs some candidate agent could take, oldest first, locked (SKIP LOCKED keeps
-- concurrent claims apart). %candidates is a JSON array of
-- {"labels": {...}, "cpus": free, "memory_mb": free}.
-- The claim walks the queue's index (jobs_pending_idx) in order and stops at max_jobs. Left
-- to its statistics, the planner would rather sort every pending job whenever those say the
-- queue is short, as they do right after a burst of submissions (a job array of 100,000)
-- until the table is next analyzed: a claim then costs the whole queue. Sorting is turned
-- off for this one query, which never needs it. Its plan is made once a session (a generic
-- plan: planned afresh at each call, the claim cost more the deeper the queue; migration 0013).
CREATE FUNCTION hodei_claim_pending(candidates jsonb, max_jobs integer)
RETURNS TABLE (id uuid, spec bytea, selector jsonb, cpus double precision, memory_mb bigint)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT j.id, j.spec, j.selector, j.cpus, j.memory_mb
    FROM jobs j
    WHERE j.state = 'PENDING'
      AND j.not_before <= now()
      AND EXISTS (
          SELECT 1
          FROM jsonb_array_elements(candidates) AS c(v)
          WHERE j.selector <@ (c.v -> 'labels')
            AND j.cpus <= (c.v ->> 'cpus')::double precision
            AND j.memory_mb <= (c.v ->> 'memory_mb')::bigint)
    ORDER BY j.not_before, j.created_at
    LIMIT max_jobs
    FOR UPDATE OF j SKIP LOCKED;
END
$$;
-- Why a pending job is not placed yet ("no worker matches os=linux"), set by the leader's
-- reconciler and shown while the job is PENDING.
ALTER TABLE jobs ADD COLUMN waiting_reason text NOT NULL DEFAULT '';
