-- The queue at depth: a claim as quick with 100,000 jobs waiting as with 1,000, and the
-- first page of a filtered `job list` as quick with 1,000,000 jobs in the table.

-- Pending jobs some candidate agent could take, oldest first, locked (SKIP LOCKED keeps
-- concurrent claims apart). %candidates is a JSON array of
-- {"labels": {...}, "cpus": free, "memory_mb": free}.
-- The claim walks the queue's index (jobs_pending_idx) in order and stops at max_jobs. Left
-- to its statistics, the planner would rather sort every pending job whenever those say the
-- queue is short, as they do right after a burst of submissions (a job array of 100,000)
-- until the table is next analyzed: a claim then costs the whole queue. Sorting is turned
-- off for this one query, which never needs it (PL/pgSQL: its plan is made once a session).
CREATE FUNCTION hodei_claim_pending(candidates jsonb, max_jobs integer)
RETURNS TABLE (id uuid, spec bytea, selector jsonb, cpus double precision, memory_mb bigint)
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
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

-- `job list --state S`: newest first within one state, whatever the other states hold.
CREATE INDEX jobs_state_created_idx ON jobs (state, created_at DESC, id DESC);
