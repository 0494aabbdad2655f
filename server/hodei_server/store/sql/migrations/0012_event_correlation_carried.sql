-- A job's events carry its correlation id in the statement that writes them (the job's row
-- is at hand there), so the row trigger that looked it up runs only for an insert that
-- names none: the column has no default any more, and NULL asks for the look-up. Before,
-- every event of the dispatch path (assigned, running, ended) ran the PL/pgSQL function,
-- a regular expression and a look-up of the job by id.
ALTER TABLE events ALTER COLUMN correlation_id DROP DEFAULT;

DROP TRIGGER events_correlation ON events;
DROP FUNCTION hodei_event_correlation();

-- A job's event that names no correlation id takes the job's; any other event none.
CREATE FUNCTION hodei_event_correlation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.correlation_id := '';
    IF NEW.aggregate_type = 'job'
       AND NEW.aggregate_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        NEW.correlation_id := coalesce(
            (SELECT j.correlation_id FROM jobs j WHERE j.id = NEW.aggregate_id::uuid), '');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_correlation BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.correlation_id IS NULL) EXECUTE FUNCTION hodei_event_correlation();
