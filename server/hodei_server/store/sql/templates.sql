-- Named queries of hodei_server.store.templates and hodei_server.store.schedules: job
-- templates, their versions, their run history, their schedules and the ticks decided.

-- name: insert_template
WITH t AS (
    INSERT INTO job_templates (id, name, version, keep_succeeded, keep_failed, created_by,
                               updated_by)
    VALUES (%(id)s, %(name)s, 1, %(keep_succeeded)s, %(keep_failed)s, %(actor)s, %(actor)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING *
), v AS (
    INSERT INTO job_template_versions (template_id, version, spec, created_by)
    SELECT t.id, 1, %(spec)s, %(actor)s FROM t
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'template.created', 'template', t.name, '{"version": 1}'::jsonb, %(actor)s FROM t
)
SELECT * FROM t;

-- name: update_template
-- A new version; the template row is locked until the transaction ends.
WITH t AS (
    UPDATE job_templates
    SET version = version + 1, keep_succeeded = %(keep_succeeded)s,
        keep_failed = %(keep_failed)s, updated_at = now(), updated_by = %(actor)s
    WHERE name = %(name)s
    RETURNING *
), v AS (
    INSERT INTO job_template_versions (template_id, version, spec, created_by)
    SELECT t.id, t.version, %(spec)s, %(actor)s FROM t
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'template.updated', 'template', t.name, jsonb_build_object('version', t.version),
           %(actor)s
    FROM t
)
SELECT * FROM t;

-- name: lock_template
-- For a run: held (shared) until the run is stored, so the template can't be deleted or
-- disabled in between.
SELECT t.*, v.spec, v.version AS spec_version
FROM job_templates t
JOIN job_template_versions v
  ON v.template_id = t.id AND v.version = coalesce(%(version)s, t.version)
WHERE t.name = %(name)s
FOR SHARE OF t;

-- name: get_template
SELECT t.*, v.spec, v.version AS spec_version, v.created_at AS spec_created_at,
       v.created_by AS spec_created_by
FROM job_templates t
LEFT JOIN job_template_versions v
  ON v.template_id = t.id AND v.version = coalesce(%(version)s, t.version)
WHERE t.name = %(name)s;

-- name: list_templates
SELECT t.*, v.spec, v.version AS spec_version
FROM job_templates t
JOIN job_template_versions v ON v.template_id = t.id AND v.version = t.version
ORDER BY t.name;

-- name: set_template_disabled
WITH t AS (
    UPDATE job_templates SET disabled = %(disabled)s, updated_at = now()
    WHERE name = %(name)s
    RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT CASE WHEN %(disabled)s THEN 'template.disabled' ELSE 'template.enabled' END,
           'template', t.name, '{}'::jsonb, %(actor)s
    FROM t
)
SELECT * FROM t;

-- name: delete_template
-- Refused (no row) while a run of it has not ended; its ended jobs stay.
WITH t AS (
    DELETE FROM job_templates t
    WHERE t.name = %(name)s
      AND NOT EXISTS (SELECT 1 FROM jobs j
                      WHERE j.template_id = t.id
                        AND j.state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))
    RETURNING t.id, t.name
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'template.deleted', 'template', t.name, '{}'::jsonb, %(actor)s FROM t
)
SELECT id FROM t;

-- name: active_runs_of_template
SELECT id, state FROM jobs
WHERE template_id = (SELECT id FROM job_templates WHERE name = %(name)s)
  AND state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
ORDER BY created_at
LIMIT 5;

-- name: template_stats
-- A template's runs: counts, success rate, median and 95th percentile duration, last.
SELECT count(*) AS runs,
       count(*) FILTER (WHERE finished_at IS NOT NULL AND state = 'SUCCEEDED') AS succeeded,
       count(*) FILTER (WHERE finished_at IS NOT NULL AND state <> 'SUCCEEDED') AS failed,
       count(*) FILTER (WHERE finished_at IS NULL) AS active,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS p95,
       (array_agg(state ORDER BY finished_at DESC) FILTER (WHERE finished_at IS NOT NULL))[1]
           AS last_state,
       (array_agg(job_id ORDER BY finished_at DESC) FILTER (WHERE finished_at IS NOT NULL))[1]
           AS last_job_id,
       max(finished_at) AS last_finished_at
FROM template_runs
WHERE template_id = %(template_id)s;

-- name: recent_template_runs
-- The newest runs, with the state of those not recorded as ended yet read from their job.
SELECT r.job_id, r.version, r.parameters, r.scheduled_at, r.submitted_by, r.created_at,
       coalesce(r.started_at, j.started_at) AS started_at, r.finished_at,
       CASE WHEN r.finished_at IS NULL THEN coalesce(j.state, r.state) ELSE r.state END
           AS state
FROM template_runs r LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.template_id = %(template_id)s
ORDER BY r.created_at DESC, r.job_id DESC
LIMIT %(limit)s;

-- name: upsert_schedule
-- A template's schedule as its latest version says. A new expression or time zone starts
-- afresh from now (the ticks of the old one are not made up); otherwise the ticks already
-- decided stay decided.
INSERT INTO schedules AS s (template_id, cron, timezone, starting_deadline_seconds,
                            concurrency, cursor_at, next_run_at)
VALUES (%(template_id)s, %(cron)s, %(timezone)s, %(deadline)s, %(concurrency)s, %(now)s,
        %(next_run_at)s)
ON CONFLICT (template_id) DO UPDATE
SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,
    starting_deadline_seconds = EXCLUDED.starting_deadline_seconds,
    concurrency = EXCLUDED.concurrency,
    cursor_at = CASE WHEN (s.cron, s.timezone) = (EXCLUDED.cron, EXCLUDED.timezone)
                     THEN s.cursor_at ELSE EXCLUDED.cursor_at END,
    next_run_at = CASE WHEN (s.cron, s.timezone) = (EXCLUDED.cron, EXCLUDED.timezone)
                       THEN s.next_run_at ELSE EXCLUDED.next_run_at END,
    updated_at = now();

-- name: delete_schedule
DELETE FROM schedules WHERE template_id = %(template_id)s;

-- name: get_schedule
SELECT s.*, t.name, t.disabled,
       (SELECT state FROM jobs WHERE id = s.last_job_id) AS last_state
FROM schedules s JOIN job_templates t ON t.id = s.template_id
WHERE t.name = %(name)s;

-- name: list_schedules
SELECT s.*, t.name, t.disabled,
       (SELECT state FROM jobs WHERE id = s.last_job_id) AS last_state
FROM schedules s JOIN job_templates t ON t.id = s.template_id
ORDER BY t.name;

-- name: set_schedule_suspended
WITH s AS (
    UPDATE schedules s SET suspended = %(suspended)s, updated_at = now()
    FROM job_templates t
    WHERE t.id = s.template_id AND t.name = %(name)s
    RETURNING s.template_id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT CASE WHEN %(suspended)s THEN 'schedule.suspended' ELSE 'schedule.resumed' END,
           'template', %(name)s, '{}'::jsonb, %(actor)s
    FROM s
)
SELECT template_id FROM s;

-- name: clock
SELECT statement_timestamp() AS now;

-- name: due_schedules
-- Schedules with a tick due, of templates that may run.
SELECT s.template_id
FROM schedules s JOIN job_templates t ON t.id = s.template_id
WHERE NOT s.suspended AND NOT t.disabled AND s.next_run_at <= %(now)s
ORDER BY s.next_run_at
LIMIT %(limit)s;

-- name: lock_schedule
-- The schedule and its template's latest version, locked while its due ticks are decided.
SELECT s.*, t.name, t.disabled, t.version, v.spec
FROM schedules s
JOIN job_templates t ON t.id = s.template_id
JOIN job_template_versions v ON v.template_id = t.id AND v.version = t.version
WHERE s.template_id = %(template_id)s
FOR UPDATE OF s;

-- name: active_scheduled_runs
-- The scheduled runs of a template that have not ended (what forbid and replace look at).
SELECT id, state FROM jobs
WHERE template_id = %(template_id)s AND scheduled_at IS NOT NULL
  AND state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
ORDER BY scheduled_at;

-- name: insert_ticks
-- The decisions about a schedule's ticks; one per tick, ever (no row back: decided before).
INSERT INTO schedule_ticks (template_id, scheduled_at, outcome, job_id, reason, decided_by)
SELECT %(template_id)s, t.at, t.outcome, t.job_id, t.reason, %(decided_by)s
FROM unnest(%(ats)s::timestamptz[], %(outcomes)s::text[], %(job_ids)s::uuid[],
            %(reasons)s::text[]) AS t(at, outcome, job_id, reason)
ON CONFLICT (template_id, scheduled_at) DO NOTHING
RETURNING scheduled_at;

-- name: advance_schedule
-- Fenced by the cursor read under the lock: a tick is decided once.
UPDATE schedules
SET cursor_at = %(cursor_at)s, next_run_at = %(next_run_at)s,
    started = started + %(started)s, missed = missed + %(missed)s,
    skipped = skipped + %(skipped)s,
    last_scheduled_at = CASE WHEN %(job_id)s::uuid IS NULL THEN last_scheduled_at
                             ELSE %(cursor_at)s END,
    last_job_id = coalesce(%(job_id)s::uuid, last_job_id),
    last_missed_at = coalesce(%(last_missed_at)s, last_missed_at),
    last_missed_reason = CASE WHEN %(last_missed_at)s::timestamptz IS NULL
                              THEN last_missed_reason ELSE %(last_missed_reason)s END,
    updated_at = now()
WHERE template_id = %(template_id)s AND cursor_at = %(expected_cursor)s
RETURNING template_id;

-- name: schedule_event
INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
VALUES (%(type)s, 'template', %(name)s, %(payload)s, %(actor)s);

-- name: prune_schedule_ticks
-- Ticks decided long ago: the cursor is past them, so they can't be decided again.
DELETE FROM schedule_ticks WHERE decided_at < now() - interval '30 days';
