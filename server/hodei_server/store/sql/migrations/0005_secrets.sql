-- The built-in secret store: values encrypted with AES-256-GCM under a key the database
-- never holds. `key_id` names that key (its fingerprint) so keys can rotate; the secret's
-- name is bound as associated data, so a ciphertext moved to another name fails to decrypt.
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
