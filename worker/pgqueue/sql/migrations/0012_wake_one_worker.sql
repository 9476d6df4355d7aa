-- Wake one waiting worker per message (issue 20). Until now every enqueue NOTIFYed the one
-- channel every idle worker LISTENs on and every one of them claimed: ~W claim statements per
-- message, most of them empty. A worker whose claim came back short (its queues looked empty
-- and it has room) now marks itself waiting here, and an enqueue takes as many waiting workers
-- as it has messages and NOTIFYs each one's own channel (pgqueue.wake).
--
-- Unlogged: who waits right now is worth nothing after a crash, and the churn (a row taken per
-- message, given back per idle spell: HOT updates of one small page) writes no WAL. A row whose
-- worker died is taken by the next enqueue like any other: that message then waits for a poll
-- (poll_interval), nothing more; a worker that (re)connects deletes its own row and the rows of
-- workers whose heartbeat (pgqueue.worker) stopped a minute ago.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.
CREATE UNLOGGED TABLE pgqueue.waiting_worker (
    worker_id  text PRIMARY KEY,
    channel    text NOT NULL,
    queues     text[] NOT NULL,
    waiting    boolean NOT NULL DEFAULT true,
    since      timestamptz NOT NULL DEFAULT clock_timestamp(),
    woken      bigint NOT NULL DEFAULT 0  -- wake-ups this worker was sent (for people watching)
);

-- Whoever could enqueue before can enqueue now: every role with INSERT on the message table
-- (PUBLIC included) may take and write these rows too. Later roles: grant both.
DO $grant_waiting$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname !~ '^pg_'
               AND has_table_privilege(oid, 'pgqueue.message', 'INSERT')
               AND oid <> (SELECT relowner FROM pg_class WHERE oid = 'pgqueue.message'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueue.waiting_worker TO %I',
                       r.rolname);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
               WHERE c.oid = 'pgqueue.message'::regclass AND a.grantee = 0
                 AND a.privilege_type = 'INSERT') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgqueue.waiting_worker TO PUBLIC;
    END IF;
END
$grant_waiting$;

-- Wakes up to p_count workers waiting on p_queue, the most recently idle first (warm
-- processes; the long idle ones stay idle for a scale-in), each by a NOTIFY on its own channel
-- with the queue as payload; returns how many. Called in the enqueue's statement, so the
-- NOTIFYs are delivered with its commit (and not at all if it rolls back).
-- Fewer waiting workers than messages: one NOTIFY on the shared channel pgqueue_enqueue, which
-- every worker that can LISTEN hears (those with room claim). That covers the race this table
-- alone would lose: a worker marking itself waiting right now, after a claim that could not
-- see this uncommitted message, while this statement cannot see its uncommitted row yet. A
-- busy fleet hears it too, and claims as its tasks settle anyway. SKIP LOCKED: a row another
-- enqueue is taking is that enqueue's.
CREATE FUNCTION pgqueue.wake(p_queue text, p_count integer DEFAULT 1) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $wake$
DECLARE
    woken integer := 0;
    w record;
BEGIN
    IF p_count IS NULL OR p_count < 1 THEN
        RETURN 0;
    END IF;
    -- A look without locks first: in a busy fleet nobody waits, and taking rows costs an
    -- enqueue ~20 us more of server time than this (measured on Postgres 18).
    IF EXISTS (SELECT 1 FROM pgqueue.waiting_worker o
               WHERE o.waiting AND p_queue = ANY(o.queues)) THEN
        FOR w IN
            UPDATE pgqueue.waiting_worker d SET waiting = false, woken = d.woken + 1
            WHERE d.worker_id IN (SELECT o.worker_id FROM pgqueue.waiting_worker o
                                  WHERE o.waiting AND p_queue = ANY(o.queues)
                                  ORDER BY o.since DESC LIMIT p_count
                                  FOR UPDATE SKIP LOCKED)
            RETURNING d.channel
        LOOP
            PERFORM pg_notify(w.channel, p_queue);
            woken := woken + 1;
        END LOOP;
    END IF;
    IF woken < p_count THEN
        PERFORM pg_notify('pgqueue_enqueue', p_queue);
    END IF;
    RETURN woken;
END
$wake$;
