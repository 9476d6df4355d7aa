-- 0007 (web console): the gate flag's history, kept by a trigger so that every writer (the CLI,
-- the operator's ConfigMap sync, the console, a hand-written UPDATE) is recorded, and a registry
-- of live workers that each worker's heartbeat keeps fresh. Both are small: one row per flip,
-- one row per worker process.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

-- One row per change of a flag's value (not per rewrite of the same value).
CREATE TABLE pgqueue.flag_history (
    change_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         text NOT NULL,
    enabled     boolean NOT NULL,
    value       text NOT NULL,
    source      text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flag_history_key_idx ON pgqueue.flag_history (key, change_id);

CREATE FUNCTION pgqueue.note_flag_change() RETURNS trigger
LANGUAGE plpgsql AS $note$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.enabled IS DISTINCT FROM NEW.enabled
       OR OLD.value IS DISTINCT FROM NEW.value THEN
        INSERT INTO pgqueue.flag_history (key, enabled, value, source)
        VALUES (NEW.key, NEW.enabled, NEW.value, NEW.source);
    END IF;
    RETURN NULL;
END
$note$;

CREATE TRIGGER flag_history AFTER INSERT OR UPDATE ON pgqueue.flag
    FOR EACH ROW EXECUTE FUNCTION pgqueue.note_flag_change();

-- One row per running worker process (its supervisor), written at start, refreshed by its
-- heartbeat and deleted at a clean stop; a row whose heartbeat is old is a worker that died.
CREATE TABLE pgqueue.worker (
    worker_id     text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    queues        text[] NOT NULL,
    slots         integer NOT NULL,
    busy          integer NOT NULL DEFAULT 0,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
