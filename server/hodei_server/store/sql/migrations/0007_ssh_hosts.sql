-- The `ssh` provider's hosts: machines reached over SSH and bootstrapped into workers.
-- host_key/fingerprint hold the pinned host key (`hodeictl host trust`, --fingerprint, or
-- the first connection of a trust-on-first-use host); 'known_hosts' hosts are checked
-- against the operator's known_hosts file instead.
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
