-- Unique jobs (issue 18): at most one message per unique key while it waits or runs, enforced
-- by a partial unique index (the worker deletes a message when it settles, which frees the
-- key), and optionally for a window after its first enqueue (pgqueue.unique_hold).
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.
ALTER TABLE pgqueue.message ADD COLUMN unique_key text;
CREATE UNIQUE INDEX message_unique_idx ON pgqueue.message (unique_key)
    WHERE unique_key IS NOT NULL;

-- A unique key held past its message: no second message with that key is enqueued before
-- expires_at (the first enqueue plus unique_for), even when the first one already settled.
-- Only the enqueue that won the message insert writes a hold, so the index stays the arbiter.
CREATE TABLE pgqueue.unique_hold (
    unique_key  text PRIMARY KEY,
    msg_id      bigint NOT NULL,
    reply_key   text,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX unique_hold_expires_idx ON pgqueue.unique_hold (expires_at);

-- Whoever could enqueue before can enqueue unique jobs: every role with INSERT on the message
-- table (PUBLIC included) may use the hold table too. Later roles: grant both.
DO $grant_hold$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname !~ '^pg_'
               AND has_table_privilege(oid, 'pgqueue.message', 'INSERT')
               AND oid <> (SELECT relowner FROM pg_class WHERE oid = 'pgqueue.message'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueue.unique_hold TO %I',
                       r.rolname);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
               WHERE c.oid = 'pgqueue.message'::regclass AND a.grantee = 0
                 AND a.privilege_type = 'INSERT') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueue.unique_hold TO PUBLIC;
    END IF;
END
$grant_hold$;

-- One message with a unique key: returns the new message (created) or the one that holds the
-- key (its msg_id and reply key, not created). The insert waits for a concurrent enqueuer of
-- the same key to commit or roll back (the index's own lock: no advisory lock, pooler-safe);
-- a holder that settled between the insert and the read is retried, so it never returns empty.
-- Every statement of a VOLATILE function sees the commits before it (READ COMMITTED).
CREATE FUNCTION pgqueue.enqueue_unique(
    p_queue text, p_task_name text, p_payload jsonb, p_reply_key text, p_priority smallint,
    p_tenant text, p_delay float8, p_deadline float8, p_unique_key text, p_unique_for float8
) RETURNS TABLE (msg_id bigint, reply_key text, created boolean)
LANGUAGE plpgsql VOLATILE AS $enqueue$
DECLARE
    v_id bigint;
    v_reply text;
BEGIN
    FOR attempt IN 1..100 LOOP
        SELECT h.msg_id, h.reply_key INTO v_id, v_reply FROM pgqueue.unique_hold h
        WHERE h.unique_key = p_unique_key AND h.expires_at > now();
        IF FOUND THEN
            RETURN QUERY SELECT v_id, v_reply, false;
            RETURN;
        END IF;
        INSERT INTO pgqueue.message AS m
            (queue, task_name, payload, reply_key, priority, tenant, vt, deadline, unique_key)
        VALUES (p_queue, p_task_name, p_payload, p_reply_key, p_priority, p_tenant,
                now() + make_interval(secs => p_delay),
                now() + make_interval(secs => p_deadline), p_unique_key)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
        RETURNING m.msg_id INTO v_id;
        IF FOUND THEN
            IF p_unique_for > 0 THEN
                INSERT INTO pgqueue.unique_hold AS h (unique_key, msg_id, reply_key, expires_at)
                VALUES (p_unique_key, v_id, p_reply_key,
                        now() + make_interval(secs => p_unique_for))
                ON CONFLICT (unique_key) DO UPDATE
                SET msg_id = excluded.msg_id, reply_key = excluded.reply_key,
                    expires_at = excluded.expires_at;
            END IF;
            -- Amortised cleanup: each new hold removes a few expired ones.
            DELETE FROM pgqueue.unique_hold h
            WHERE h.unique_key IN (SELECT o.unique_key FROM pgqueue.unique_hold o
                                   WHERE o.expires_at <= now()
                                   ORDER BY o.expires_at LIMIT 8 FOR UPDATE SKIP LOCKED);
            RETURN QUERY SELECT v_id, p_reply_key, true;
            RETURN;
        END IF;
        SELECT m.msg_id, m.reply_key INTO v_id, v_reply FROM pgqueue.message m
        WHERE m.unique_key = p_unique_key;
        IF FOUND THEN
            RETURN QUERY SELECT v_id, v_reply, false;
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'unique key % kept changing hands: no message after 100 attempts',
        p_unique_key;
END
$enqueue$;
