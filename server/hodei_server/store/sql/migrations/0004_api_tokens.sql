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
