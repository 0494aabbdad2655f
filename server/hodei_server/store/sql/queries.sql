-- The server's named queries (hodei_server.store.sqlfiles). Each starts with "-- name: <name>".
-- Parameters are always bound (%(name)s), never formatted in.

-- name: insert_job
-- The job, its job.created event and the wake-up, in one statement. Given a worker (else
-- NULL) that this replica holds a free slot of for it, and when no job is waiting (none
-- PENDING and due), the job is stored ASSIGNED to it instead, with its first attempt and
-- its job.assigned event, and no wake-up: one statement instead of an insert, a claim and
-- an assignment. Otherwise it queues PENDING behind the jobs that wait.
WITH slot AS (
    SELECT %(worker_id)s::uuid AS worker_id,
           %(worker_id)s::uuid IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM jobs WHERE state = 'PENDING' AND not_before <= now())
           AS placed
), j AS (
    INSERT INTO jobs (id, name, spec, state, attempt, worker_id, max_attempts,
                      idempotency_key, labels, selector, cpus, memory_mb, timeout_seconds,
                      retry_on, backoff_seconds, max_backoff_seconds, submitted_by,
                      correlation_id)
    SELECT %(id)s, %(name)s, %(spec)s,
           CASE WHEN p.placed THEN 'ASSIGNED' ELSE 'PENDING' END,
           CASE WHEN p.placed THEN 1 ELSE 0 END,
           CASE WHEN p.placed THEN p.worker_id END,
           %(max_attempts)s, %(idempotency_key)s, %(labels)s, %(selector)s, %(cpus)s,
           %(memory_mb)s, %(timeout_seconds)s, %(retry_on)s, %(backoff_seconds)s,
           %(max_backoff_seconds)s, %(submitted_by)s, %(correlation_id)s
    FROM slot p
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
), a AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, state)
    SELECT j.id, j.attempt, j.worker_id, 'ASSIGNED' FROM j WHERE j.state = 'ASSIGNED'
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT 'job.created', 'job', j.id::text, jsonb_build_object('name', j.name), %(actor)s,
           j.correlation_id
    FROM j
    UNION ALL
    SELECT 'job.assigned', 'job', j.id::text,
           jsonb_build_object('attempt', j.attempt, 'worker_id', j.worker_id::text),
           %(actor)s, j.correlation_id
    FROM j WHERE j.state = 'ASSIGNED'
)
SELECT j.*, (SELECT pg_notify('hodei_jobs', '') FROM j WHERE j.state = 'PENDING') AS notified
FROM j;

-- name: insert_jobs
-- Many plain jobs (a job array), their job.created events and one wake-up, in one
-- statement; one array element per job, in order (%(retry_on)s: each job's list joined
-- by ','). A job whose idempotency key exists already is not inserted (nor its event).
-- Each job's events carry its correlation id.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(names)s::text[], %(specs)s::bytea[],
                         %(max_attempts)s::int[], %(idempotency_keys)s::text[],
                         %(labels)s::jsonb[], %(selectors)s::jsonb[], %(cpus)s::float8[],
                         %(memory_mb)s::bigint[], %(timeout_seconds)s::float8[],
                         %(retry_on)s::text[], %(backoff_seconds)s::float8[],
                         %(max_backoff_seconds)s::float8[], %(correlation_ids)s::text[])
        WITH ORDINALITY AS t(id, name, spec, max_attempts, idempotency_key, labels, selector,
                             cpus, memory_mb, timeout_seconds, retry_on, backoff_seconds,
                             max_backoff_seconds, correlation_id, n)
), j AS (
    INSERT INTO jobs (id, name, spec, state, max_attempts, idempotency_key, labels, selector,
                      cpus, memory_mb, timeout_seconds, retry_on, backoff_seconds,
                      max_backoff_seconds, submitted_by, correlation_id)
    SELECT id, name, spec, 'PENDING', max_attempts, idempotency_key, labels, selector, cpus,
           memory_mb, timeout_seconds, string_to_array(retry_on, ','), backoff_seconds,
           max_backoff_seconds, %(submitted_by)s, correlation_id
    FROM input ORDER BY n
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, name, idempotency_key, correlation_id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT 'job.created', 'job', j.id::text, jsonb_build_object('name', j.name), %(actor)s,
           j.correlation_id
    FROM j
    RETURNING id
)
SELECT j.id, (SELECT pg_notify('hodei_jobs', '') FROM e LIMIT 1) AS notified FROM j;

-- name: get_jobs_by_idempotency_keys
SELECT id, idempotency_key FROM jobs WHERE idempotency_key = ANY (%(keys)s::text[]);

-- name: get_job_by_idempotency_key
SELECT * FROM jobs WHERE idempotency_key = %(idempotency_key)s;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_job_state
SELECT state, attempt FROM jobs WHERE id = %(id)s;

-- name: get_job_attempts
SELECT * FROM job_attempts WHERE job_id = %(id)s ORDER BY attempt;

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: notify_each
SELECT pg_notify(%(channel)s, payload) FROM unnest(%(payloads)s::text[]) AS payload;

-- name: claim_pending_jobs
-- Pending jobs that at least one of the candidate agents could take, oldest first: see
-- hodei_claim_pending (migration 0010) for why it is a function.
-- %(candidates)s is a JSON array of {"labels": {...}, "cpus": free, "memory_mb": free}.
SELECT id, spec, selector, cpus, memory_mb
FROM hodei_claim_pending(%(candidates)s::jsonb, %(limit)s);

-- name: assign_jobs
-- A claim round's placements, one array element per job: each job that is still PENDING
-- (the fence: a claim holds no lock once its statement ends) gets its next attempt on its
-- worker, its attempt row and its job.assigned event.
-- The fence reads `state || ''` so that no index on the state can serve it: the rows are
-- found by their ids. Written plainly, a generic plan made while the statistics still
-- describe a short queue (right after a burst of submissions) walked every pending job
-- through the pending index for each round's few ids.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(worker_ids)s::uuid[]) AS t(id, worker_id)
), j AS (
    UPDATE jobs
    SET state = 'ASSIGNED', attempt = jobs.attempt + 1, worker_id = i.worker_id,
        exit_code = NULL, reason = '', updated_at = now()
    FROM input i
    WHERE jobs.id = i.id AND jobs.state || '' = 'PENDING'
    RETURNING jobs.id, jobs.attempt, jobs.worker_id, jobs.correlation_id
), a AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, state)
    SELECT j.id, j.attempt, j.worker_id, 'ASSIGNED' FROM j
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT 'job.assigned', 'job', j.id::text,
           jsonb_build_object('attempt', j.attempt, 'worker_id', j.worker_id::text),
           %(actor)s, j.correlation_id
    FROM j
)
SELECT id, attempt, worker_id FROM j;

-- name: mark_running_many
-- mark_running for many attempts of one worker, one array element each. One row per
-- element: whether it was marked, and the job's state the update saw.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(pids)s::int[])
        AS t(id, attempt, pid)
), j AS (
    UPDATE jobs
    SET state = 'RUNNING', started_at = now(), updated_at = now()
    FROM input i
    WHERE jobs.id = i.id AND jobs.attempt = i.attempt AND jobs.worker_id = %(worker_id)s
      AND jobs.state || '' = 'ASSIGNED'  -- found by id (see assign_jobs)
    RETURNING jobs.id, jobs.attempt, i.pid, jobs.correlation_id
), a AS (
    UPDATE job_attempts SET state = 'RUNNING', started_at = now()
    FROM j WHERE job_attempts.job_id = j.id AND job_attempts.attempt = j.attempt
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT 'job.running', 'job', j.id::text,
           jsonb_build_object('attempt', j.attempt, 'pid', j.pid), %(actor)s, j.correlation_id
    FROM j
)
SELECT i.id, i.attempt, j.id IS NOT NULL AS marked,
       (SELECT state FROM jobs WHERE jobs.id = i.id) AS state
FROM input i LEFT JOIN j ON j.id = i.id AND j.attempt = i.attempt;

-- name: finish_many
-- finish_job for many attempts of one worker whose ending needs no look at the job's
-- policy (succeeded, cancelled), one array element each. `started`: the agent reported
-- the attempt started in the same batch: an attempt still ASSIGNED is taken through
-- RUNNING in this one write (its started_at and job.running event), not two.
-- In autocommit each statement is its own transaction, so `started_at = now()` in
-- RETURNING means "started by this statement".
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(states)s::text[],
                         %(exit_codes)s::int[], %(reasons)s::text[], %(finals)s::bool[],
                         %(fails_parent)s::bool[], %(from_states)s::text[],
                         %(started)s::bool[], %(pids)s::int[])
        AS t(id, attempt, state, exit_code, reason, final, fails_parent, from_states,
             started, pid)
), j AS (
    UPDATE jobs
    SET state = i.state, exit_code = i.exit_code, reason = i.reason,
        finished_at = CASE WHEN i.final THEN now() END,
        started_at = CASE WHEN i.started AND jobs.state = 'ASSIGNED' THEN now()
                          ELSE jobs.started_at END,
        not_before = now(),
        worker_id = CASE WHEN i.final THEN jobs.worker_id END,
        fails_parent = i.fails_parent,
        updated_at = now()
    FROM input i
    WHERE jobs.id = i.id AND jobs.attempt = i.attempt
      AND jobs.worker_id IS NOT DISTINCT FROM %(worker_id)s
      AND jobs.state = ANY (string_to_array(i.from_states, ','))
    RETURNING jobs.id, jobs.attempt, jobs.state, jobs.exit_code, jobs.reason,
              jobs.has_followups, jobs.correlation_id, i.final, i.pid,
              i.started AND jobs.started_at = now() AS started_now
), a AS (
    UPDATE job_attempts
    SET state = j.state, exit_code = j.exit_code, reason = j.reason, finished_at = now(),
        started_at = CASE WHEN j.started_now THEN now() ELSE job_attempts.started_at END
    FROM j WHERE job_attempts.job_id = j.id AND job_attempts.attempt = j.attempt
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT ev.type, 'job', j.id::text, ev.payload, %(actor)s, j.correlation_id
    FROM j CROSS JOIN LATERAL (
        SELECT 1 AS n, 'job.running' AS type,
               jsonb_build_object('attempt', j.attempt, 'pid', j.pid) AS payload
        WHERE j.started_now
        UNION ALL
        SELECT 2, 'job.' || lower(j.state),
               jsonb_build_object('attempt', j.attempt, 'exit_code', j.exit_code,
                                  'reason', j.reason, 'attempt_state', j.state,
                                  'retry_in_seconds', 0::double precision)
    ) AS ev
    ORDER BY j.id, ev.n
), n AS (
    SELECT j.id, j.attempt, pg_notify('hodei_logs', j.id::text) AS logs,
           CASE WHEN j.final AND j.has_followups THEN pg_notify('hodei_flows', '') END
               AS flows
    FROM j
)
SELECT id, attempt FROM n;

-- name: lock_job_for_finish
SELECT state, attempt, worker_id, max_attempts, retry_on, backoff_seconds, max_backoff_seconds,
       failure_policy
FROM jobs
WHERE id = %(id)s
FOR UPDATE;

-- name: finish_job
-- Moves the job to a final state (or PENDING for a retry) from one of the
-- expected states, fenced by attempt and worker.
WITH j AS (
    UPDATE jobs
    SET state = %(state)s, exit_code = %(exit_code)s, reason = %(reason)s,
        finished_at = CASE WHEN %(final)s THEN now() END,
        not_before = now() + make_interval(secs => %(delay)s),
        max_attempts = max_attempts + %(refund)s,
        worker_id = CASE WHEN %(final)s THEN worker_id END,
        fails_parent = %(fails_parent)s,
        updated_at = now()
    WHERE id = %(id)s AND attempt = %(attempt)s
      AND worker_id IS NOT DISTINCT FROM %(worker_id)s
      AND state = ANY (%(from_states)s::text[])
    RETURNING id, attempt, state, exit_code, reason, has_followups, correlation_id
), a AS (
    UPDATE job_attempts
    SET state = %(attempt_state)s, exit_code = %(exit_code)s, reason = %(reason)s,
        finished_at = now()
    FROM j WHERE job_attempts.job_id = j.id AND job_attempts.attempt = j.attempt
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT CASE WHEN j.state = 'PENDING' THEN 'job.retry_scheduled'
                ELSE 'job.' || lower(j.state) END,
           'job', j.id::text,
           jsonb_build_object('attempt', j.attempt, 'exit_code', j.exit_code,
                              'reason', j.reason, 'attempt_state', %(attempt_state)s::text,
                              'retry_in_seconds', %(delay)s::double precision),
           %(actor)s, j.correlation_id
    FROM j
), n AS (
    -- Followers of the job (on any replica), for a retry the dispatchers, and for the end
    -- of a job others follow (dependents, its indexed job, its template) the leader.
    SELECT j.id, pg_notify('hodei_logs', j.id::text) AS logs,
           CASE WHEN j.state = 'PENDING' THEN pg_notify('hodei_jobs', '') END AS jobs,
           CASE WHEN %(final)s AND j.has_followups THEN pg_notify('hodei_flows', '') END
               AS flows
    FROM j
)
SELECT id FROM n;

-- name: retry_finished_job
WITH j AS (
    UPDATE jobs
    SET state = 'PENDING', max_attempts = GREATEST(max_attempts, attempt + 1),
        exit_code = NULL, reason = '', worker_id = NULL, finished_at = NULL,
        cancel_requested_at = NULL, not_before = now(), updated_at = now()
    WHERE id = %(id)s AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
    RETURNING id, attempt
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.retried', 'job', j.id::text, jsonb_build_object('after_attempt', j.attempt),
           %(actor)s
    FROM j
)
SELECT id FROM j;

-- name: cancel_pending_job
WITH j AS (
    UPDATE jobs
    SET state = 'CANCELLED', reason = %(reason)s, finished_at = now(), updated_at = now(),
        cancel_requested_at = now()
    WHERE id = %(id)s AND state || '' = 'PENDING'  -- found by id (see assign_jobs)
    RETURNING id, attempt
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.cancelled', 'job', j.id::text,
           jsonb_build_object('attempt', j.attempt, 'reason', %(reason)s::text), %(actor)s
    FROM j
)
SELECT id FROM j;

-- name: request_cancel
WITH j AS (
    UPDATE jobs
    SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
    WHERE id = %(id)s AND state IN ('ASSIGNED', 'RUNNING')
    RETURNING id, attempt, worker_id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.cancel_requested', 'job', j.id::text,
           jsonb_build_object('attempt', j.attempt, 'reason', %(reason)s::text), %(actor)s
    FROM j
)
SELECT id, attempt, worker_id FROM j;

-- name: insert_log_chunk
-- Idempotent, and fenced: only the worker holding the job's current, still active
-- attempt may write it (a worker declared lost, or a superseded attempt, may not).
INSERT INTO job_logs (job_id, attempt, seq, stream, data)
SELECT %(job_id)s, %(attempt)s, %(seq)s, %(stream)s, %(data)s
WHERE EXISTS (
    SELECT 1 FROM jobs
    WHERE id = %(job_id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
      AND state IN ('ASSIGNED', 'RUNNING'))
ON CONFLICT (job_id, attempt, seq) DO NOTHING;

-- name: read_log_chunks
SELECT attempt, seq, stream, data, created_at
FROM job_logs
WHERE job_id = %(job_id)s AND (attempt, seq) > (%(after_attempt)s, %(after_seq)s)
ORDER BY attempt, seq
LIMIT %(limit)s;

-- name: count_jobs_by_state
-- Read from the (state, created_at, id) index, not the table's rows.
SELECT state, count(*) AS jobs FROM jobs GROUP BY state;

-- name: read_log_chunks_back
-- Newest first, from before a point: a tail or a page of output is found by reading back
-- from its end along the primary key, never by reading the output from its beginning.
SELECT attempt, seq, data
FROM job_logs
WHERE job_id = %(job_id)s AND (attempt, seq) < (%(before_attempt)s, %(before_seq)s)
ORDER BY attempt DESC, seq DESC
LIMIT %(limit)s;

-- name: insert_bootstrap_token
INSERT INTO bootstrap_tokens (token_hash, provider, labels, expires_at)
VALUES (%(token_hash)s, %(provider)s, %(labels)s, now() + make_interval(secs => %(ttl)s));

-- name: consume_bootstrap_token
UPDATE bootstrap_tokens
SET used_at = now(), worker_id = %(worker_id)s
WHERE token_hash = %(token_hash)s AND used_at IS NULL AND expires_at > now()
RETURNING provider, labels;

-- name: delete_expired_tokens
DELETE FROM bootstrap_tokens
WHERE expires_at < now() - interval '1 day';

-- name: insert_worker
WITH w AS (
    INSERT INTO workers (id, name, hostname, provider, labels, slots, cpus, memory_mb, state,
                         credential_hash, agent_version)
    VALUES (%(id)s, %(name)s, %(hostname)s, %(provider)s, %(labels)s, %(slots)s, %(cpus)s,
            %(memory_mb)s, 'PROVISIONING', %(credential_hash)s, %(agent_version)s)
    RETURNING id
)
INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
SELECT 'worker.registered', 'worker', w.id::text,
       jsonb_build_object('name', %(name)s::text, 'provider', %(provider)s::text), 'agent'
FROM w;

-- name: get_worker
SELECT * FROM workers WHERE id = %(id)s;

-- name: worker_connected
WITH w AS (
    UPDATE workers
    SET state = 'READY', server_id = %(server_id)s, labels = %(labels)s, slots = %(slots)s,
        cpus = %(cpus)s, memory_mb = %(memory_mb)s, agent_version = %(agent_version)s,
        last_heartbeat_at = now(), updated_at = now()
    WHERE id = %(id)s AND state NOT IN ('TERMINATED')
    RETURNING id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'worker.connected', 'worker', w.id::text,
           jsonb_build_object('server_id', %(server_id)s::text), 'agent'
    FROM w
)
SELECT id FROM w;

-- name: worker_heartbeat
-- No row back: the worker was declared lost (or took another stream) meanwhile.
UPDATE workers
SET last_heartbeat_at = now(), metrics = %(metrics)s, running_jobs = %(running_jobs)s,
    state = CASE WHEN state = 'DRAINING' THEN 'DRAINING'
                 WHEN %(running_jobs)s > 0 THEN 'BUSY' ELSE 'READY' END,
    updated_at = now()
WHERE id = %(id)s AND server_id = %(server_id)s AND state IN ('READY', 'BUSY', 'DRAINING')
RETURNING id;

-- name: worker_disconnected
WITH w AS (
    UPDATE workers
    SET state = %(state)s, server_id = NULL, updated_at = now()
    WHERE id = %(id)s AND server_id = %(server_id)s AND state IN ('READY', 'BUSY', 'DRAINING')
    RETURNING id, state
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'worker.' || lower(w.state), 'worker', w.id::text, '{}'::jsonb, 'server'
    FROM w
)
SELECT id FROM w;

-- name: list_workers
SELECT * FROM workers
WHERE %(all)s OR state NOT IN ('TERMINATED', 'LOST')
ORDER BY registered_at, id;

-- name: mark_lost_workers
-- Workers whose heartbeats stopped: no live stream on any replica kept them fresh.
WITH w AS (
    UPDATE workers
    SET state = 'LOST', server_id = NULL, updated_at = now()
    WHERE state IN ('PROVISIONING', 'READY', 'BUSY', 'DRAINING', 'DISCONNECTED')
      AND last_heartbeat_at < now() - make_interval(secs => %(ttl)s)
    RETURNING id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'worker.lost', 'worker', w.id::text, '{}'::jsonb, 'reconciler' FROM w
)
SELECT id FROM w;

-- name: active_jobs_of_workers
SELECT id, attempt, max_attempts, state, worker_id, cpus, memory_mb
FROM jobs
WHERE worker_id = ANY (%(worker_ids)s::uuid[]) AND state IN ('ASSIGNED', 'RUNNING');

-- name: assigned_specs
-- The specs of attempts assigned to a worker and not yet started, to send them again.
SELECT id, spec
FROM jobs
WHERE id = ANY (%(ids)s::uuid[]) AND worker_id = %(worker_id)s
  AND state || '' = 'ASSIGNED';  -- found by id (see assign_jobs)

-- name: pending_demand
-- Pending, runnable jobs with their needs, for provisioning decisions.
SELECT selector, cpus, memory_mb
FROM jobs
WHERE state = 'PENDING' AND not_before <= now()
ORDER BY not_before, created_at
LIMIT %(limit)s;

-- name: drain_worker
WITH w AS (
    UPDATE workers SET state = 'DRAINING', updated_at = now()
    WHERE id = %(id)s AND state IN ('READY', 'BUSY', 'DRAINING')
    RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'worker.draining', 'worker', w.id::text, '{}'::jsonb, %(actor)s FROM w
)
SELECT * FROM w;

-- name: insert_audit
INSERT INTO audit_log (actor, action, target, allowed, detail)
VALUES (%(actor)s, %(action)s, %(target)s, %(allowed)s, %(detail)s);

-- name: list_audit
-- An action is matched whole ("secret.set", "/hodei.api.v1.WorkerService/DrainWorker") or,
-- for a call, by its method's name alone ("DrainWorker").
SELECT id, at, actor, action, target, allowed, detail FROM audit_log
WHERE (%(action)s = '' OR action = %(action)s
       OR right(action, length(%(action)s) + 1) = '/' || %(action)s)
  AND id > %(after)s
ORDER BY id LIMIT %(limit)s;

-- name: insert_api_token
INSERT INTO api_tokens (id, name, role, secret_hash, created_by, expires_at)
VALUES (%(id)s, %(name)s, %(role)s, %(secret_hash)s, %(created_by)s,
        CASE WHEN %(ttl)s::float8 > 0 THEN now() + make_interval(secs => %(ttl)s::float8) END)
ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING *;

-- name: get_api_token
SELECT *, expires_at IS NOT NULL AND expires_at <= now() AS expired
FROM api_tokens WHERE id = %(id)s;

-- name: touch_api_token
UPDATE api_tokens SET last_used_at = now() WHERE id = %(id)s;

-- name: revoke_api_token
-- Every replica drops its cached copy of the token on the notification.
WITH r AS (
    UPDATE api_tokens SET revoked_at = now()
    WHERE name = %(name)s AND revoked_at IS NULL
    RETURNING *
)
SELECT r.*, pg_notify('hodei_tokens', r.id) AS notified FROM r;

-- name: list_api_tokens
SELECT * FROM api_tokens
WHERE %(all)s OR revoked_at IS NULL
ORDER BY created_at, id;

-- name: set_worker_certificate
-- A new client certificate for a worker: the current serial becomes the previous one,
-- unless the caller presented the previous one (a second renewal after a lost answer).
UPDATE workers
SET prev_cert_serial = CASE WHEN cert_serial = %(presented)s THEN cert_serial
                            ELSE prev_cert_serial END,
    cert_serial = %(serial)s, cert_not_after = %(not_after)s, updated_at = now()
WHERE id = %(id)s AND state NOT IN ('TERMINATED')
  AND (%(presented)s::text IS NULL OR %(presented)s IN (cert_serial, prev_cert_serial))
RETURNING id;

-- name: upsert_secret
-- (inserted = true) when the name was new.
INSERT INTO secrets AS s (name, key_id, nonce, ciphertext, size_bytes, updated_by)
VALUES (%(name)s, %(key_id)s, %(nonce)s, %(ciphertext)s, %(size_bytes)s, %(actor)s)
ON CONFLICT (name) DO UPDATE
SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
    size_bytes = EXCLUDED.size_bytes, updated_by = EXCLUDED.updated_by, updated_at = now()
RETURNING name, key_id, size_bytes, created_at, updated_at, updated_by, (xmax = 0) AS inserted;

-- name: delete_secret
DELETE FROM secrets WHERE name = %(name)s RETURNING name;

-- name: get_secret
SELECT name, key_id, nonce, ciphertext FROM secrets WHERE name = %(name)s;

-- name: existing_secrets
SELECT name FROM secrets WHERE name = ANY (%(names)s::text[]);

-- name: list_secrets
SELECT name, key_id, size_bytes, created_at, updated_at, updated_by FROM secrets ORDER BY name;

-- name: ping
SELECT 1;

-- name: lock_migrations
-- Held until the transaction ends: replicas starting together migrate one at a time.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS hodei_migrations (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM hodei_migrations;

-- name: record_migration
INSERT INTO hodei_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: try_leader_lock
-- Held by the session (its connection) until it closes: the leader is whoever holds it.
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s;

-- name: create_embedded_database
-- The embedded stack's database; its name is fixed, as a name can't be a bound parameter.
CREATE DATABASE hodei;

-- name: listen
-- Every channel of hodei_server.store.signals (a channel is a name, never a parameter).
LISTEN hodei_jobs;
LISTEN hodei_logs;
LISTEN hodei_cancel;
LISTEN hodei_drain;
LISTEN hodei_tokens;
LISTEN hodei_flows;
LISTEN hodei_events;

-- name: waiting_jobs
-- Pending jobs that have waited a moment, in the order the claim takes them: what the
-- reconciler explains.
SELECT id, selector, cpus, memory_mb, not_before, waiting_reason
FROM jobs
WHERE state = 'PENDING' AND created_at < now() - make_interval(secs => %(grace)s)
ORDER BY not_before, created_at
LIMIT %(limit)s;

-- name: placement_workers
-- Workers as placement sees them: their labels, size and load (the jobs assigned to them
-- now, which the heartbeat's count only catches up with).
SELECT w.id, w.name, w.provider, w.labels, w.slots, w.cpus, w.memory_mb, w.state,
       greatest(w.running_jobs, (SELECT count(*) FROM jobs j
                                 WHERE j.worker_id = w.id
                                   AND j.state IN ('ASSIGNED', 'RUNNING')))::int
           AS running_jobs
FROM workers w
WHERE w.state IN ('READY', 'BUSY', 'DRAINING');

-- name: set_waiting_reasons
-- Each changed reason of a still-pending job, with a job.waiting event when one is given.
-- Found by their ids, never through an index on the state (see assign_jobs).
WITH r AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(reasons)s::text[]) AS r(id, reason)
), j AS (
    UPDATE jobs SET waiting_reason = r.reason
    FROM r
    WHERE jobs.id = r.id AND jobs.state || '' = 'PENDING' AND jobs.waiting_reason <> r.reason
    RETURNING jobs.id, jobs.waiting_reason
)
INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
SELECT 'job.waiting', 'job', j.id::text, jsonb_build_object('reason', j.waiting_reason),
       %(actor)s
FROM j WHERE j.waiting_reason <> '';
