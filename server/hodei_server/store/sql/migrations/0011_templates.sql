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
