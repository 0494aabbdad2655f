-- Named queries of the `ssh` provider's host registry (hodei_plugins.ssh.registry).

-- name: ssh_host_insert
WITH h AS (
    INSERT INTO ssh_hosts (name, address, port, username, key_path, labels, jump, sudo,
                           host_key_mode, fingerprint)
    VALUES (%(name)s, %(address)s, %(port)s, %(username)s, %(key_path)s, %(labels)s,
            %(jump)s, %(sudo)s, %(host_key_mode)s, %(fingerprint)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'host.added', 'host', h.name,
           jsonb_build_object('address', h.address, 'port', h.port, 'user', h.username,
                              'host_key_mode', h.host_key_mode),
           %(actor)s
    FROM h
)
SELECT * FROM h;

-- name: ssh_host_get
SELECT * FROM ssh_hosts WHERE name = %(name)s;

-- name: ssh_host_list
SELECT h.*, w.state AS worker_state, w.last_heartbeat_at AS worker_heartbeat_at
FROM ssh_hosts h
LEFT JOIN LATERAL (
    SELECT state, last_heartbeat_at FROM workers
    WHERE workers.name = h.worker_name AND h.worker_name <> ''
    ORDER BY registered_at DESC LIMIT 1
) w ON true
ORDER BY h.name;

-- name: ssh_host_pin
-- Pins a host key; a host-key change is an audited event.
WITH h AS (
    UPDATE ssh_hosts
    SET host_key = %(host_key)s, fingerprint = %(fingerprint)s,
        host_key_mode = CASE WHEN host_key_mode = 'known_hosts' THEN 'pinned'
                             ELSE host_key_mode END,
        updated_at = now()
    WHERE name = %(name)s
    RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'host.key_pinned', 'host', h.name,
           jsonb_build_object('fingerprint', h.fingerprint), %(actor)s
    FROM h
)
SELECT * FROM h;

-- name: ssh_host_set_state
UPDATE ssh_hosts
SET state = %(state)s, last_error = %(last_error)s, updated_at = now(),
    last_contact = CASE WHEN %(contacted)s THEN now() ELSE last_contact END
WHERE name = %(name)s
RETURNING *;

-- name: ssh_host_bootstrapped
WITH h AS (
    UPDATE ssh_hosts
    SET state = 'ready', last_error = '', service = %(service)s,
        agent_version = %(agent_version)s, worker_name = %(worker_name)s,
        provider = %(provider)s, last_contact = now(), updated_at = now()
    WHERE name = %(name)s
    RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'host.bootstrapped', 'host', h.name,
           jsonb_build_object('agent_version', h.agent_version, 'service', h.service,
                              'worker', h.worker_name, 'provider', h.provider),
           %(actor)s
    FROM h
)
SELECT * FROM h;

-- name: ssh_host_delete
WITH h AS (
    DELETE FROM ssh_hosts WHERE name = %(name)s RETURNING *
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'host.removed', 'host', h.name, jsonb_build_object('worker', h.worker_name),
           %(actor)s
    FROM h
)
SELECT * FROM h;

-- name: ssh_host_revoke_worker
-- The worker a removed host ran can never authenticate again.
WITH w AS (
    UPDATE workers SET state = 'TERMINATED', updated_at = now()
    WHERE name = %(worker_name)s AND provider = %(provider)s AND state <> 'TERMINATED'
    RETURNING id
), e AS (
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    SELECT 'worker.revoked', 'worker', w.id::text,
           jsonb_build_object('reason', 'host removed'), %(actor)s
    FROM w
)
SELECT count(*) AS revoked FROM w;
