-- Named queries of the event feeds (hodei_server.store.events). An event's position is
-- (txid, id); `revision` is txid as a bigint. Only events of transactions older than the
-- reader's snapshot xmin are "settled": none can appear before them any more.

-- name: events_horizon
-- Every event of a transaction older than this has been written (or never will be).
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon;

-- name: events_after
-- The next events in feed order, each saying whether it is settled (settled ones come
-- first: the order is by txid).
SELECT e.id, e.txid::text::bigint AS revision, e.type, e.aggregate_type, e.aggregate_id,
       e.payload, e.actor, e.correlation_id, e.created_at,
       e.txid < pg_snapshot_xmin(pg_current_snapshot()) AS settled
FROM events e
WHERE (e.txid, e.id) > (%(after_revision)s::text::xid8, %(after_id)s::bigint)
ORDER BY e.txid, e.id
LIMIT %(limit)s;

-- name: events_matching
-- Events after a position and up to another (inclusive), that match a filter, oldest
-- first. A NULL or empty filter field matches everything.
SELECT e.id, e.txid::text::bigint AS revision, e.type, e.aggregate_type, e.aggregate_id,
       e.payload, e.actor, e.correlation_id, e.created_at
FROM events e
WHERE (e.txid, e.id) > (%(after_revision)s::text::xid8, %(after_id)s::bigint)
  AND (e.txid, e.id) <= (%(until_revision)s::text::xid8, %(until_id)s::bigint)
  AND (%(job_id)s::text IS NULL OR (e.aggregate_type = 'job' AND e.aggregate_id = %(job_id)s))
  AND (%(worker_id)s::text IS NULL
       OR (e.aggregate_type = 'worker' AND e.aggregate_id = %(worker_id)s)
       OR (e.aggregate_type = 'job' AND e.payload ->> 'worker_id' = %(worker_id)s))
  AND (cardinality(%(types)s::text[]) + cardinality(%(prefixes)s::text[]) = 0
       OR e.type = ANY (%(types)s::text[])
       OR EXISTS (SELECT 1 FROM unnest(%(prefixes)s::text[]) AS p WHERE starts_with(e.type, p)))
  AND (%(actor)s::text IS NULL OR e.actor = %(actor)s)
  AND (%(correlation_id)s::text IS NULL OR e.correlation_id = %(correlation_id)s)
  AND (%(since)s::timestamptz IS NULL OR e.created_at >= %(since)s)
  AND (%(audit)s OR e.aggregate_type <> 'audit')
ORDER BY e.txid, e.id
LIMIT %(limit)s;

-- name: latest_events_matching
-- The latest `limit` events up to a position that match a filter (as events_matching),
-- newest first.
SELECT e.id, e.txid::text::bigint AS revision, e.type, e.aggregate_type, e.aggregate_id,
       e.payload, e.actor, e.correlation_id, e.created_at
FROM events e
WHERE (e.txid, e.id) <= (%(until_revision)s::text::xid8, %(until_id)s::bigint)
  AND (%(job_id)s::text IS NULL OR (e.aggregate_type = 'job' AND e.aggregate_id = %(job_id)s))
  AND (%(worker_id)s::text IS NULL
       OR (e.aggregate_type = 'worker' AND e.aggregate_id = %(worker_id)s)
       OR (e.aggregate_type = 'job' AND e.payload ->> 'worker_id' = %(worker_id)s))
  AND (cardinality(%(types)s::text[]) + cardinality(%(prefixes)s::text[]) = 0
       OR e.type = ANY (%(types)s::text[])
       OR EXISTS (SELECT 1 FROM unnest(%(prefixes)s::text[]) AS p WHERE starts_with(e.type, p)))
  AND (%(actor)s::text IS NULL OR e.actor = %(actor)s)
  AND (%(correlation_id)s::text IS NULL OR e.correlation_id = %(correlation_id)s)
  AND (%(since)s::timestamptz IS NULL OR e.created_at >= %(since)s)
  AND (%(audit)s OR e.aggregate_type <> 'audit')
ORDER BY e.txid DESC, e.id DESC
LIMIT %(limit)s;

-- name: events_rest_of_transaction
-- The events of one transaction after an id: a batch of the feed never splits one.
SELECT e.id, e.txid::text::bigint AS revision, e.type, e.aggregate_type, e.aggregate_id,
       e.payload, e.actor, e.correlation_id, e.created_at, true AS settled
FROM events e
WHERE e.txid = %(revision)s::text::xid8 AND e.id > %(after_id)s::bigint
ORDER BY e.id;

-- name: jobs_changed_since
-- The jobs that events after a revision, up to a position, name (at most `limit`).
SELECT DISTINCT e.aggregate_id
FROM events e
WHERE e.txid > %(after_revision)s::text::xid8
  AND (e.txid, e.id) <= (%(until_revision)s::text::xid8, %(until_id)s::bigint)
  AND e.aggregate_type = 'job'
LIMIT %(limit)s;

-- name: jobs_by_ids
SELECT * FROM jobs WHERE id = ANY (%(ids)s::uuid[]);

-- name: watch_jobs_snapshot
-- The newest jobs that match a watcher's filter (as JobFilter.matches in events.py).
-- %(id_prefix)s holds hex digits and dashes only (checked), %(name_like)s is a LIKE pattern
-- made from a glob with its own percent sign, underscore and backslash escaped.
SELECT * FROM jobs
WHERE (cardinality(%(states)s::text[]) = 0 OR state = ANY (%(states)s::text[]))
  AND labels @> %(labels)s::jsonb
  AND (%(name)s = '' OR strpos(lower(name), lower(%(name)s)) > 0)
  AND (%(worker_id)s::uuid IS NULL OR worker_id = %(worker_id)s::uuid)
  AND (cardinality(%(ids)s::uuid[]) = 0 OR id = ANY (%(ids)s::uuid[]))
  AND (%(id_prefix)s = '' OR id::text LIKE %(id_prefix)s || '%%')
  AND (%(name_like)s::text IS NULL OR name LIKE %(name_like)s::text)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: list_jobs_matching
-- A page of the jobs that match a filter (as watch_jobs_snapshot), newest first, after a
-- (created_at, id) position.
SELECT * FROM jobs
WHERE (cardinality(%(states)s::text[]) = 0 OR state = ANY (%(states)s::text[]))
  AND labels @> %(labels)s::jsonb
  AND (%(name)s = '' OR strpos(lower(name), lower(%(name)s)) > 0)
  AND (%(worker_id)s::uuid IS NULL OR worker_id = %(worker_id)s::uuid)
  AND (cardinality(%(ids)s::uuid[]) = 0 OR id = ANY (%(ids)s::uuid[]))
  AND (%(id_prefix)s = '' OR id::text LIKE %(id_prefix)s || '%%')
  AND (%(name_like)s::text IS NULL OR name LIKE %(name_like)s::text)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: all_workers
SELECT * FROM workers ORDER BY registered_at, id;

-- name: metrics_jobs
-- Jobs by state and the provider of their worker ("" for none), for /metrics.
SELECT j.state, coalesce(w.provider, '') AS provider, count(*) AS count
FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id
GROUP BY 1, 2;

-- name: metrics_workers
SELECT state, provider, count(*) AS count FROM workers GROUP BY 1, 2;

-- name: metrics_slots
SELECT provider, sum(slots) AS slots, sum(least(running_jobs, slots)) AS used
FROM workers WHERE state IN ('READY', 'BUSY', 'DRAINING')
GROUP BY 1;

-- name: metrics_load
SELECT name, provider, coalesce((metrics ->> 'cpu_percent')::float8, 0) AS cpu_percent,
       coalesce((metrics ->> 'memory_available_mb')::float8, 0) AS memory_available_mb
FROM workers WHERE state IN ('READY', 'BUSY', 'DRAINING');

-- name: register_watchers
-- This replica has live watchers: writers notify hodei_events for `ttl` seconds.
INSERT INTO event_watchers (server_id, until)
VALUES (%(server_id)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (server_id) DO UPDATE SET until = EXCLUDED.until;

-- name: unregister_watchers
DELETE FROM event_watchers WHERE server_id = %(server_id)s OR until < now() - interval '1 hour';
