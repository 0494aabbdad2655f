-- Retry policy per job: which endings are retried, and the backoff between attempts.
ALTER TABLE jobs
    ADD COLUMN retry_on text[] NOT NULL DEFAULT '{lost}',
    ADD COLUMN backoff_seconds double precision NOT NULL DEFAULT 1,
    ADD COLUMN max_backoff_seconds double precision NOT NULL DEFAULT 60;
