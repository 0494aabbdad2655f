-- Live feeds: events in the order their transactions settle, a correlation id carried by
-- every event a job causes, the audit trail in the same feed, and one wake-up a statement.
--
-- `txid` is the writing transaction's id. Once every transaction older than a reader's
-- snapshot xmin has ended, no event with a smaller txid can appear any more: a watcher that
-- reads in (txid, id) order only up to that horizon never skips an event committed late and
-- never sees one twice (hodei_server.store.events).
ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_txid_idx ON events (txid, id);
CREATE INDEX events_created_idx ON events (created_at);

-- Set by the submitter (or its x-correlation-id metadata); else the idempotency key.
ALTER TABLE jobs ADD COLUMN correlation_id text NOT NULL DEFAULT '';

-- A job's event that names no correlation id takes the job's.
CREATE FUNCTION hodei_event_correlation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.correlation_id = '' AND NEW.aggregate_type = 'job'
       AND NEW.aggregate_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        NEW.correlation_id := coalesce(
            (SELECT j.correlation_id FROM jobs j WHERE j.id = NEW.aggregate_id::uuid), '');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_correlation BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION hodei_event_correlation();

-- The replicas that have live watchers, each until its registration lapses.
CREATE TABLE event_watchers (
    server_id text PRIMARY KEY,
    until     timestamptz NOT NULL
);

-- Watchers on every replica wake once a statement that wrote events commits. Only while
-- some replica has live watchers: notifying transactions commit one at a time (PostgreSQL
-- serialises them), a price not worth paying for nobody.
CREATE FUNCTION hodei_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM event_watchers WHERE until > now()) THEN
        PERFORM pg_notify('hodei_events', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION hodei_events_notify();

-- Every audit row is an event too ("audit.<action>"), so one feed answers who did what.
CREATE FUNCTION hodei_audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, aggregate_type, aggregate_id, payload, actor)
    VALUES ('audit.' || NEW.action, 'audit', NEW.target,
            NEW.detail || jsonb_build_object('allowed', NEW.allowed, 'audit_id', NEW.id),
            NEW.actor);
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_event AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hodei_audit_event();
