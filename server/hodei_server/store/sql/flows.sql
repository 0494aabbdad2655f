-- Named queries of hodei_server.store.flows: jobs that wait for others, indexed jobs,
-- the template run history, and deleting jobs after their time.

-- name: lock_dependencies
-- The jobs a new job will wait for, locked until it is stored, and marked so that their
-- ending wakes the leader; the state each is in now.
UPDATE jobs SET has_followups = true
WHERE id = ANY (%(ids)s::uuid[])
RETURNING id, state;

-- name: insert_flow_job
-- A job with dependencies, indexes, a failure policy, a TTL or a template: the job, its
-- event and (for a template's run) its entry in the run history, in one statement.
WITH j AS (
    INSERT INTO jobs (id, name, spec, state, max_attempts, idempotency_key, labels, selector,
                      cpus, memory_mb, timeout_seconds, retry_on, backoff_seconds,
                      max_backoff_seconds, submitted_by, completions, parallelism,
                      failure_policy, has_followups, ttl_after_finished_seconds, template_id,
                      template_name, template_version, parameters, scheduled_at, reason,
                      started_at, correlation_id)
    VALUES (%(id)s, %(name)s, %(spec)s, %(state)s, %(max_attempts)s, %(idempotency_key)s,
            %(labels)s, %(selector)s, %(cpus)s, %(memory_mb)s, %(timeout_seconds)s,
            %(retry_on)s, %(backoff_seconds)s, %(max_backoff_seconds)s, %(submitted_by)s,
            %(completions)s, %(parallelism)s, %(failure_policy)s, %(has_followups)s,
            %(ttl)s, %(template_id)s, %(template_name)s, %(template_version)s,
            %(parameters)s, %(scheduled_at)s, %(reason)s,
            CASE WHEN %(state)s = 'RUNNING' THEN now() END, %(correlation_id)s)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT 'job.created', 'job', j.id::text,
           jsonb_build_object('name', j.name, 'state', j.state, 'after', %(after)s::jsonb,
                              'completions', j.completions, 'template', j.template_name,
                              'version', j.template_version),
           %(actor)s, j.correlation_id
    FROM j
), r AS (
    INSERT INTO template_runs (job_id, template_id, version, parameters, scheduled_at,
                               submitted_by, state, created_at)
    SELECT j.id, j.template_id, j.template_version, coalesce(j.parameters, '{}'::jsonb),
           j.scheduled_at, j.submitted_by, j.state, j.created_at
    FROM j WHERE j.template_id IS NOT NULL
)
SELECT * FROM j;

-- name: insert_dependencies
INSERT INTO job_dependencies (job_id, depends_on, condition)
SELECT %(job_id)s, d.depends_on, d.condition
FROM unnest(%(depends_on)s::uuid[], %(conditions)s::text[]) AS d(depends_on, condition);

-- name: insert_indexes
-- An indexed job's indexes: the first `parallelism` queued, the others BLOCKED until a
-- slot frees. Each inherits the job's needs and policies; its spec carries its index.
WITH c AS (
    INSERT INTO jobs (id, name, spec, state, max_attempts, labels, selector, cpus, memory_mb,
                      timeout_seconds, retry_on, backoff_seconds, max_backoff_seconds,
                      submitted_by, failure_policy, has_followups, parent_id, job_index,
                      reason, correlation_id)
    SELECT i.id, p.name || '[' || i.idx || ']', i.spec,
           CASE WHEN i.idx < %(parallelism)s THEN 'PENDING' ELSE 'BLOCKED' END,
           p.max_attempts, p.labels, p.selector, p.cpus, p.memory_mb, p.timeout_seconds,
           p.retry_on, p.backoff_seconds, p.max_backoff_seconds, p.submitted_by,
           p.failure_policy, true, p.id, i.idx,
           CASE WHEN i.idx < %(parallelism)s THEN '' ELSE 'waiting for a parallelism slot' END,
           p.correlation_id
    FROM jobs p, unnest(%(ids)s::uuid[], %(specs)s::bytea[], %(indexes)s::int[])
                 AS i(id, spec, idx)
    WHERE p.id = %(parent_id)s
    RETURNING id, name, state, correlation_id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor, correlation_id)
    SELECT 'job.created', 'job', c.id::text,
           jsonb_build_object('name', c.name, 'state', c.state, 'parent_id', %(parent_id)s::text),
           %(actor)s, c.correlation_id
    FROM c
)
SELECT count(*) AS created FROM c;

-- name: blocked_jobs
-- Jobs waiting for their dependencies (indexes waiting for a slot are their parent's
-- business), oldest first, a page at a time.
SELECT id, created_at, completions, reason, spec
FROM jobs
WHERE state = 'BLOCKED' AND parent_id IS NULL
  AND (created_at, id) > (%(after_created_at)s::timestamptz, %(after_id)s::uuid)
ORDER BY created_at, id
LIMIT %(limit)s;

-- name: dependencies_of
SELECT d.job_id, d.depends_on, d.condition, j.state
FROM job_dependencies d JOIN jobs j ON j.id = d.depends_on
WHERE d.job_id = ANY (%(ids)s::uuid[])
ORDER BY d.job_id, d.depends_on;

-- name: unblock_job
-- A BLOCKED job moves on: to PENDING (queued), RUNNING (an indexed job, whose indexes are
-- then inserted) or CANCELLED (a condition that can never hold), with its event.
WITH j AS (
    UPDATE jobs
    SET state = %(state)s, reason = %(reason)s, not_before = now(), updated_at = now(),
        started_at = CASE WHEN %(state)s = 'RUNNING' THEN now() END,
        finished_at = CASE WHEN %(state)s = 'CANCELLED' THEN now() END
    WHERE id = %(id)s AND state || '' = 'BLOCKED'  -- found by id (see assign_jobs)
    RETURNING id, state, reason
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT CASE WHEN j.state = 'CANCELLED' THEN 'job.cancelled' ELSE 'job.unblocked' END,
           'job', j.id::text, jsonb_build_object('state', j.state, 'reason', j.reason),
           %(actor)s
    FROM j
)
SELECT j.id, pg_notify('hodei_logs', j.id::text) AS followers,
       CASE WHEN j.state = 'PENDING' THEN pg_notify('hodei_jobs', '') END AS dispatchers
FROM j;

-- name: set_blocked_reason
UPDATE jobs SET reason = %(reason)s, updated_at = now()
WHERE id = %(id)s AND state || '' = 'BLOCKED'  -- found by id (see assign_jobs)
  AND reason <> %(reason)s;

-- name: running_indexed_jobs
SELECT id FROM jobs WHERE state = 'RUNNING' AND completions > 0 ORDER BY created_at;

-- name: lock_indexed_job
SELECT id, completions, parallelism FROM jobs
WHERE id = %(id)s AND state = 'RUNNING' AND completions > 0
FOR UPDATE;

-- name: index_tally
-- An indexed job's indexes by where they stand.
SELECT count(*) FILTER (WHERE state = 'BLOCKED') AS blocked,
       count(*) FILTER (WHERE state IN ('PENDING', 'ASSIGNED', 'RUNNING', 'LOST')) AS queued,
       count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded,
       coalesce(array_agg(job_index ORDER BY job_index)
                FILTER (WHERE state IN ('FAILED', 'TIMED_OUT', 'CANCELLED')), '{}') AS failed,
       min(job_index) FILTER (WHERE state = 'FAILED' AND fails_parent) AS failing_job
FROM jobs WHERE parent_id = %(id)s;

-- name: start_indexes
-- Up to %(count)s blocked indexes, lowest first, take the slots that freed. (Picked in a
-- materialized CTE: as an IN subquery, its LIMIT could be applied more than once.)
WITH picked AS MATERIALIZED (
    SELECT id FROM jobs
    WHERE parent_id = %(parent_id)s AND state = 'BLOCKED'
    ORDER BY job_index LIMIT %(count)s
    FOR UPDATE SKIP LOCKED
), c AS (
    UPDATE jobs
    SET state = 'PENDING', reason = '', not_before = now(), updated_at = now()
    FROM picked
    WHERE jobs.id = picked.id AND jobs.state = 'BLOCKED'
    RETURNING jobs.id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.unblocked', 'job', c.id::text, '{"state": "PENDING"}'::jsonb, %(actor)s
    FROM c
)
SELECT count(*) AS started, CASE WHEN count(*) > 0 THEN pg_notify('hodei_jobs', '') END
FROM c;

-- name: finish_indexed_job
WITH j AS (
    UPDATE jobs
    SET state = %(state)s, reason = %(reason)s, finished_at = now(), updated_at = now()
    WHERE id = %(id)s AND state = 'RUNNING' AND completions > 0
    RETURNING id, state, reason
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.' || lower(j.state), 'job', j.id::text,
           jsonb_build_object('reason', j.reason), %(actor)s
    FROM j
)
SELECT j.id, pg_notify('hodei_logs', j.id::text) AS followers FROM j;

-- name: cancel_waiting_job
-- A BLOCKED job, or an indexed job (whose indexes are then cancelled), made CANCELLED.
WITH j AS (
    UPDATE jobs
    SET state = 'CANCELLED', reason = %(reason)s, finished_at = now(), updated_at = now(),
        cancel_requested_at = now()
    WHERE id = %(id)s
      AND (state = 'BLOCKED' OR (state = 'RUNNING' AND completions > 0))
    RETURNING id, completions
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.cancelled', 'job', j.id::text, jsonb_build_object('reason', %(reason)s::text),
           %(actor)s
    FROM j
)
SELECT id, completions FROM j;

-- name: cancel_waiting_indexes
-- The indexes of an ended indexed job that had not started: cancelled.
WITH c AS (
    UPDATE jobs
    SET state = 'CANCELLED', reason = %(reason)s, finished_at = now(), updated_at = now(),
        cancel_requested_at = now()
    WHERE parent_id = %(parent_id)s AND state IN ('PENDING', 'BLOCKED')
    RETURNING id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.cancelled', 'job', c.id::text, jsonb_build_object('reason', %(reason)s::text),
           %(actor)s
    FROM c
)
SELECT id FROM c;

-- name: active_indexes_of
SELECT id FROM jobs WHERE parent_id = %(parent_id)s AND state IN ('ASSIGNED', 'RUNNING');

-- name: index_counts
SELECT count(*) FILTER (WHERE state IN ('BLOCKED', 'PENDING')) AS waiting,
       count(*) FILTER (WHERE state IN ('ASSIGNED', 'RUNNING', 'LOST')) AS active,
       count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded,
       count(*) FILTER (WHERE state IN ('FAILED', 'TIMED_OUT', 'CANCELLED')) AS failed
FROM jobs WHERE parent_id = %(id)s;

-- name: close_template_runs
-- Runs whose job has ended (or is gone) take their place in the template's history.
UPDATE template_runs r
SET state = coalesce(o.state, 'CANCELLED'), started_at = o.started_at,
    finished_at = coalesce(o.finished_at, now())
FROM (SELECT t.job_id, j.state, j.started_at, j.finished_at
      FROM template_runs t LEFT JOIN jobs j ON j.id = t.job_id
      WHERE t.finished_at IS NULL) AS o
WHERE r.job_id = o.job_id
  AND (o.state IS NULL OR o.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))
RETURNING r.template_id;

-- name: history_limits
SELECT id, keep_succeeded, keep_failed FROM job_templates
WHERE id = ANY (%(ids)s::uuid[])
  AND (keep_succeeded IS NOT NULL OR keep_failed IS NOT NULL);

-- name: prune_template_history
-- A template's finished runs beyond its history limits lose their job (row, attempts,
-- output, indexes); the run history keeps them.
WITH ranked AS (
    SELECT id, state = 'SUCCEEDED' AS ok,
           row_number() OVER (PARTITION BY state = 'SUCCEEDED'
                              ORDER BY finished_at DESC, id DESC) AS n
    FROM jobs
    WHERE template_id = %(template_id)s
      AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
), d AS (
    DELETE FROM jobs j USING ranked
    WHERE j.id = ranked.id
      AND ((ranked.ok AND ranked.n > coalesce(%(keep_succeeded)s::int, 2147483647))
           OR (NOT ranked.ok AND ranked.n > coalesce(%(keep_failed)s::int, 2147483647)))
      AND NOT EXISTS (SELECT 1 FROM job_dependencies dep JOIN jobs w ON w.id = dep.job_id
                      WHERE dep.depends_on = j.id AND w.state || '' = 'BLOCKED')
      AND NOT EXISTS (SELECT 1 FROM template_runs r
                      WHERE r.job_id = j.id AND r.finished_at IS NULL)
    RETURNING j.id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.deleted', 'job', d.id::text, '{"reason": "history limit"}'::jsonb, %(actor)s
    FROM d
)
SELECT id FROM d;

-- name: prune_expired_jobs
-- Jobs whose ttl_after_finished has run out lose their row, attempts, output and indexes
-- (not while a BLOCKED job still waits on them, nor before the run history has them).
WITH doomed AS MATERIALIZED (
    SELECT id FROM jobs j
    WHERE ttl_after_finished_seconds IS NOT NULL AND finished_at IS NOT NULL
      AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
      AND finished_at + make_interval(secs => ttl_after_finished_seconds) <= now()
      AND NOT EXISTS (SELECT 1 FROM job_dependencies dep JOIN jobs w ON w.id = dep.job_id
                      WHERE dep.depends_on = j.id AND w.state || '' = 'BLOCKED')
      AND NOT EXISTS (SELECT 1 FROM template_runs r
                      WHERE r.job_id = j.id AND r.finished_at IS NULL)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), d AS (
    DELETE FROM jobs USING doomed WHERE jobs.id = doomed.id RETURNING jobs.id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.deleted', 'job', d.id::text, '{"reason": "ttl_after_finished"}'::jsonb,
           %(actor)s
    FROM d
)
SELECT id FROM d;

-- name: delete_job
-- A finished job loses its row, attempts, output and indexes, unless a BLOCKED job still
-- waits on it or a template run has not recorded it yet.
WITH doomed AS MATERIALIZED (
    SELECT id FROM jobs j
    WHERE id = %(id)s AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
      AND NOT EXISTS (SELECT 1 FROM job_dependencies dep JOIN jobs w ON w.id = dep.job_id
                      WHERE dep.depends_on = j.id AND w.state || '' = 'BLOCKED')
      AND NOT EXISTS (SELECT 1 FROM template_runs r
                      WHERE r.job_id = j.id AND r.finished_at IS NULL)
    FOR UPDATE
), d AS (
    DELETE FROM jobs USING doomed WHERE jobs.id = doomed.id RETURNING jobs.id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.deleted', 'job', d.id::text, '{"reason": "deleted"}'::jsonb, %(actor)s
    FROM d
)
SELECT id FROM d;

-- name: prune_retained_jobs
-- Finished jobs older than the retention setting lose their row, attempts and output
-- (not while a BLOCKED job still waits on them, nor before the run history has them).
WITH doomed AS MATERIALIZED (
    SELECT id FROM jobs j
    WHERE finished_at IS NOT NULL
      AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
      AND finished_at <= now() - make_interval(secs => %(seconds)s)
      AND NOT EXISTS (SELECT 1 FROM job_dependencies dep JOIN jobs w ON w.id = dep.job_id
                      WHERE dep.depends_on = j.id AND w.state || '' = 'BLOCKED')
      AND NOT EXISTS (SELECT 1 FROM template_runs r
                      WHERE r.job_id = j.id AND r.finished_at IS NULL)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), d AS (
    DELETE FROM jobs USING doomed WHERE jobs.id = doomed.id RETURNING jobs.id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'job.deleted', 'job', d.id::text, '{"reason": "retention"}'::jsonb, %(actor)s
    FROM d
)
SELECT id FROM d;
