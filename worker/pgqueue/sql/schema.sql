-- The canonical pgqueue schema. Migrations under migrations/ must produce exactly this;
-- tests/integration/test_schema.py compares the two catalogs. The migrations repeat parts of this
-- file (each CREATE OR REPLACE of a function as it was then) on purpose: they are history, applied
-- in order and never edited, and this file is the schema read in one place.
-- The GRANT blocks of unique_hold, waiting_worker, claim_frontier and server_epoch read alike on
-- purpose: each is its migration's (0009, 0012, 0013, 0014) as it ran, and a shared helper
-- function would be a new schema object.
CREATE SCHEMA IF NOT EXISTS pgqueue;

CREATE TABLE pgqueue.schema_version (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per pending unit of work. A row is visible to claimers when vt <= now(); a claim pushes
-- vt out by the lease, bumps read_ct and stamps a fresh claim_token; (msg_id, claim_token) fences
-- every later write of the claim's holder.
CREATE TABLE pgqueue.message (
    msg_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        text NOT NULL,
    task_name    text NOT NULL,
    payload      jsonb NOT NULL,
    reply_key    text,
    priority     smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    tenant       text NOT NULL DEFAULT '',
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    vt           timestamptz NOT NULL DEFAULT now(),
    read_ct      integer NOT NULL DEFAULT 0,
    deadline     timestamptz,
    claimed_by   text,
    claimed_at   timestamptz,
    claim_token  bigint,
    unique_key   text
);
-- Serves both the tenant walk and each tenant's (priority desc, msg_id) order in the claim.
CREATE INDEX message_claim_idx ON pgqueue.message (queue, tenant, priority DESC, msg_id);

-- 'cancelled': the reply of a cancelled call (migration 0010).
CREATE TYPE pgqueue.result_status AS ENUM ('completed', 'failed', 'cancelled');

-- Replies of request-reply calls; first write wins (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE pgqueue.result (
    reply_key   text PRIMARY KEY,
    status      pgqueue.result_status NOT NULL,
    result      jsonb,
    error       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX result_expires_idx ON pgqueue.result (expires_at);

-- Every message that is dropped lands here with its reason; nothing is deleted silently.
CREATE TABLE pgqueue.dead_letter (
    dl_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msg_id       bigint NOT NULL,
    queue        text NOT NULL,
    task_name    text NOT NULL,
    payload      jsonb NOT NULL,
    reply_key    text,
    priority     smallint NOT NULL,
    tenant       text NOT NULL,
    enqueued_at  timestamptz NOT NULL,
    read_ct      integer NOT NULL,
    reason       text NOT NULL,
    failed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letter_queue_idx ON pgqueue.dead_letter (queue, dl_id);
CREATE INDEX dead_letter_failed_at_idx ON pgqueue.dead_letter (failed_at);
-- "Already done" answers of a cancel look a msg_id up among the dead letters.
CREATE INDEX dead_letter_msg_idx ON pgqueue.dead_letter (msg_id);

-- Ticks of periodic schedules (@pgqueue.periodic), one row per tick fired; the message it enqueued
-- is msg_id. The scheduler inserts the row and the message in one statement, ON CONFLICT DO
-- NOTHING on the key, so of schedulers racing on a tick exactly one enqueues. cron and tz are the
-- schedule as that worker knew it, so `pgqueue schedule list` can show its next run without the
-- task modules. Old rows are pruned by the schedulers, the latest of each schedule kept.
CREATE TABLE pgqueue.periodic_tick (
    schedule   text NOT NULL,
    tick_at    timestamptz NOT NULL,
    msg_id     bigint NOT NULL,
    task_name  text NOT NULL,
    queue      text NOT NULL,
    cron       text NOT NULL,
    tz         text NOT NULL,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    fired_by   text NOT NULL DEFAULT '',
    PRIMARY KEY (schedule, tick_at)
);

-- Feature flags; the gate is key 'pg_queue_enabled'. value keeps the raw text a writer was given
-- (a ConfigMap value, say) so a reader can warn about an unparseable one; enabled is its parse.
CREATE TABLE pgqueue.flag (
    key         text PRIMARY KEY,
    enabled     boolean NOT NULL,
    value       text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL DEFAULT ''
);

-- A claim's fence: 52 random bits. Random rather than from a sequence, whose advance an
-- asynchronous commit can lose in a crash (and then hand out again); two claims of one message
-- draw the same token with a chance of 2^-52.
CREATE FUNCTION pgqueue.new_claim_token() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL RESTRICTED AS $token$
    SELECT floor(random() * 4503599627370496)::bigint
$token$;

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

-- Paused queues (issue 19): one row per queue no worker claims from, with who paused it, when
-- and why; resuming deletes the row. A pause takes the advisory lock (1886482547 = 'pqps',
-- hashtext(queue)) exclusively, against the claim's shared one (see pgqueue.claim). A queue with
-- no messages yet may be paused: the pause waits for its first message.
CREATE TABLE pgqueue.queue_pause (
    queue      text PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text NOT NULL DEFAULT '',
    reason     text NOT NULL DEFAULT ''
);

-- Whoever claims (UPDATE on the message table, PUBLIC included) reads the pauses: the claim runs
-- with its caller's rights. Pausing and resuming take INSERT and DELETE: grant those to the
-- roles that operate the queues.
DO $grant_pause$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname !~ '^pg_'
               AND has_table_privilege(oid, 'pgqueue.message', 'UPDATE')
               AND oid <> (SELECT relowner FROM pg_class WHERE oid = 'pgqueue.message'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT ON pgqueue.queue_pause TO %I', r.rolname);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
               WHERE c.oid = 'pgqueue.message'::regclass AND a.grantee = 0
                 AND a.privilege_type = 'UPDATE') THEN
        GRANT SELECT ON pgqueue.queue_pause TO PUBLIC;
    END IF;
END
$grant_pause$;

-- Where the single-tenant claim of a queue starts its walk (issue 20, migration 0013): the last
-- row a full claim took, in the claim index's order. Claimed rows keep their index entries (the
-- claim's update is HOT), so a claim that walked from the head of the queue stepped over every
-- row the other workers hold (40 workers of 64: 2,560 rows) and over the rows concurrent claims
-- were locking; from here it steps over neither. Approximate on purpose: a claim reads it
-- without a lock and moves it only when it can lock it at once (SKIP LOCKED), and the rows it
-- skips are found by the walk from the head that pgqueue.claim still makes (see there).
-- Unlogged: worth nothing after a crash (the next full claim writes it again), no WAL per claim.
-- moves counts the walks from the head that placed it, walked_at is the last one's time.
CREATE UNLOGGED TABLE pgqueue.claim_frontier (
    queue      text PRIMARY KEY,
    tenant     text NOT NULL,
    priority   smallint NOT NULL,
    msg_id     bigint NOT NULL,
    moves      bigint NOT NULL DEFAULT 0,
    walked_at  timestamptz NOT NULL DEFAULT now()
);

-- Whoever claims (UPDATE on the message table, PUBLIC included) reads and moves the frontier:
-- the claim runs with its caller's rights. Later roles: grant both.
DO $grant_frontier$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname !~ '^pg_'
               AND has_table_privilege(oid, 'pgqueue.message', 'UPDATE')
               AND oid <> (SELECT relowner FROM pg_class WHERE oid = 'pgqueue.message'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON pgqueue.claim_frontier TO %I', r.rolname);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
               WHERE c.oid = 'pgqueue.message'::regclass AND a.grantee = 0
                 AND a.privilege_type = 'UPDATE') THEN
        GRANT SELECT, INSERT, UPDATE ON pgqueue.claim_frontier TO PUBLIC;
    END IF;
END
$grant_frontier$;

-- Whether this server has come back from a crash (or been promoted) since pgqueue last looked
-- (migration 0014): unlogged, so crash recovery and a promoted standby start it empty, while a
-- clean restart (which flushes every asynchronous commit first) keeps it. The first claim of a
-- server that finds it empty writes its row and holds back the calls that were waiting
-- (pgqueue.after_recovery). held counts them, held_until is when they are visible again.
CREATE UNLOGGED TABLE pgqueue.server_epoch (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    started_at  timestamptz NOT NULL DEFAULT now(),
    held        bigint NOT NULL DEFAULT 0,
    held_until  timestamptz
);

-- Whoever claims writes it (the claim runs with its caller's rights): as pgqueue.claim_frontier.
DO $grant_epoch$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname !~ '^pg_'
               AND has_table_privilege(oid, 'pgqueue.message', 'UPDATE')
               AND oid <> (SELECT relowner FROM pg_class WHERE oid = 'pgqueue.message'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT ON pgqueue.server_epoch TO %I', r.rolname);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
               WHERE c.oid = 'pgqueue.message'::regclass AND a.grantee = 0
                 AND a.privilege_type = 'UPDATE') THEN
        GRANT SELECT, INSERT ON pgqueue.server_epoch TO PUBLIC;
    END IF;
END
$grant_epoch$;

-- The restart quarantine (architecture §3.4, migration 0014). A claim of a call commits
-- asynchronously, so a crash can lose a claim whose worker already runs the task: its row is
-- then waiting again as if never claimed. So that no other worker claims it and runs the call
-- a second time, the first claim after a crash or a promotion (pgqueue.server_epoch empty)
-- makes every call then visible wait p_quarantine seconds more; meanwhile the workers that
-- lost claims reconnect and take them back (the renew statement re-asserts a claim whose row
-- is exactly as it was before that claim). Fire-and-forget messages are not held back: they
-- are at least once. Returns how many calls it held back (0 when the server had been seen).
CREATE FUNCTION pgqueue.after_recovery(p_quarantine double precision) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $recovery$
DECLARE
    n bigint := 0;
BEGIN
    -- Seen already (the usual case: a new session of a running server): no write at all.
    IF EXISTS (SELECT FROM pgqueue.server_epoch) THEN
        RETURN 0;
    END IF;
    INSERT INTO pgqueue.server_epoch (one) VALUES (true) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF p_quarantine > 0 THEN
        UPDATE pgqueue.message m SET vt = now() + make_interval(secs => p_quarantine)
        WHERE m.reply_key IS NOT NULL AND m.vt <= now();
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    UPDATE pgqueue.server_epoch e
    SET held = n, held_until = now() + make_interval(secs => greatest(p_quarantine, 0));
    RAISE LOG 'pgqueue: first claim since a crash or promotion: % calls held back for % s',
        n, p_quarantine;
    RETURN n;
END
$recovery$;

-- The claim (architecture §3.1) as a function: PL/pgSQL keeps its plan per session, so a worker
-- behind a transaction pooler (which cannot keep prepared statements) does not pay ~1 ms of
-- planning on every poll. It walks up to p_tenant_span tenants with visible work (from
-- p_tenant_cursor, so many tenants rotate through successive claims), takes each tenant's best
-- rows, interleaves them (priority, then each tenant's rank, then FIFO; tenants that tie are
-- shuffled by p_salt), and locks what is free with SKIP LOCKED, returning rows in that order.
-- With one tenant waiting (no tenant keys: the usual request-reply queue) that order is simply
-- priority, then FIFO, and a plain ordered SKIP LOCKED claim gives it at half the server time.
-- A claim commits asynchronously. One that holds a call (a reply-keyed message) commits
-- synchronously instead (never weaker than 'local', whatever the session says) when p_durable
-- (the worker's durable_claims, and always behind a pooler): a claim a worker was told of then
-- cannot vanish in a crash. Without it, a lost claim is taken back by its worker (the renew
-- statement) while the restart quarantine (p_quarantine seconds, pgqueue.after_recovery) keeps
-- the other workers off the calls that were waiting; a claim of fire-and-forget messages lost
-- in a crash makes its rows claimable again (at least once).
-- Each claim stamps a fresh random claim_token (pgqueue.new_claim_token); every later write is
-- fenced by (msg_id, claim_token), a pair no re-claim repeats, even after a crash lost the claim
-- (read_ct repeats then, and after a release). A paused queue (pgqueue.queue_pause) is never
-- claimed from.
-- A batch claim of one tenant starts its walk at the queue's frontier (pgqueue.claim_frontier,
-- migration 0013) rather than at the head, and walks from the head as well for what the
-- frontier's walk could not fill, without a frontier, and (one claim of the queue at a time)
-- once the frontier is 100 ms old: a row behind it that is visible again waits at most that
-- long and one claim more. A claim of one row walks from the head, as before.
-- Its four RETURN QUERY branches (from the head; from the frontier; a batch from the head; many
-- tenants) each spell out the same claimed CTE on purpose: a CTE cannot be shared between
-- statements, and a function per step would cost a call and a plan per claim. A change to that
-- CTE is a change to all four.
CREATE FUNCTION pgqueue.claim(
    p_queue text, p_limit integer, p_candidates integer, p_lease double precision,
    p_worker_id text, p_tenant_cursor text, p_tenant_span integer, p_salt text,
    p_durable boolean DEFAULT true, p_quarantine double precision DEFAULT 10
) RETURNS TABLE (
    msg_id bigint, queue text, task_name text, payload jsonb, reply_key text,
    priority smallint, tenant text, read_ct integer, enqueued_at timestamptz,
    deadline_in double precision, waited double precision, walked bigint, last_tenant text,
    claim_token bigint
) LANGUAGE plpgsql VOLATILE AS $claim$
#variable_conflict use_column
DECLARE
    first_tenant text;
    -- The queue's frontier as this claim found it (pgqueue.claim_frontier), and whether the
    -- single-tenant walk starts there.
    batched boolean;
    fr_found boolean;
    fr_tenant text;
    fr_priority smallint;
    fr_msg_id bigint;
    fr_moves bigint;
    fr_walked_at timestamptz;
    from_frontier boolean;
    -- A full claim's last row (priority, msg_id, whether it walked from the head).
    got bigint;
    stop text[];
    -- The commit mode of a claim that holds a call: never 'off' (see above).
    durable text := CASE WHEN NOT p_durable THEN 'off'
                         WHEN current_setting('synchronous_commit') = 'off' THEN 'local'
                         ELSE current_setting('synchronous_commit') END;
BEGIN
    -- A server back from a crash or a promotion: the first claim holds back the calls that
    -- were waiting (pgqueue.after_recovery, migration 0014). A crash ends every session and a
    -- standby's sessions could not claim, so one look per session is enough: ~1 us a claim.
    IF current_setting('pgqueue.recovery_seen', true) IS DISTINCT FROM 'on' THEN
        PERFORM pgqueue.after_recovery(p_quarantine);
        PERFORM set_config('pgqueue.recovery_seen', 'on', false);
    END IF;
    -- Where the last full claims stopped (pgqueue.claim_frontier), read without a lock. Once
    -- a walk from the head placed it 100 ms ago or more, one claim of the queue walks from the
    -- head again (the one that takes the advisory lock 1886479986 = 'pqfr', hashtext(queue)
    -- first; the others keep to the frontier meanwhile): the rows it skips (see below) wait
    -- no longer than that and that claim. Its tenant is the first with work when none between
    -- the cursor and it has any (the usual single tenant: an empty range, one index probe).
    -- Only a session whose last claim of this queue was a full batch reads it (the session's
    -- hint pgqueue.claim_full): a claim of one row, or of an idle queue, runs as it did, at the
    -- cost it had (a claim of one steps over one row per worker at most).
    batched := p_limit > 1 AND coalesce(current_setting('pgqueue.claim_full', true) = p_queue, false);
    fr_found := false;
    IF batched THEN
        SELECT f.tenant, f.priority, f.msg_id, f.moves, f.walked_at
          INTO fr_tenant, fr_priority, fr_msg_id, fr_moves, fr_walked_at
          FROM pgqueue.claim_frontier f WHERE f.queue = p_queue;
        fr_found := FOUND;
    END IF;
    from_frontier := fr_found AND fr_tenant >= p_tenant_cursor;
    IF from_frontier AND fr_walked_at <= now() - interval '100 milliseconds' THEN
        from_frontier := NOT pg_try_advisory_xact_lock(1886479986, hashtext(p_queue));
    END IF;
    IF from_frontier THEN
        PERFORM FROM pgqueue.message m
         WHERE m.queue = p_queue AND m.tenant >= p_tenant_cursor AND m.tenant < fr_tenant
           AND m.vt <= now()
         ORDER BY m.tenant LIMIT 1;
        from_frontier := NOT FOUND;
    END IF;
    IF from_frontier THEN
        first_tenant := fr_tenant;
    ELSE
        -- The first two tenants with visible work, from the cursor. None: nothing to claim, and
        -- an empty poll costs one index probe. One (no tenant keys, the common case): that
        -- tenant's best rows in order, with none of the interleaving below, whose plan costs
        -- ~0.15 ms of executor start-up on every claim however few rows it returns.
        SELECT m.tenant INTO first_tenant FROM pgqueue.message m
         WHERE m.queue = p_queue AND m.tenant >= p_tenant_cursor AND m.vt <= now()
         ORDER BY m.tenant LIMIT 1;
        IF NOT FOUND THEN
            IF batched THEN
                PERFORM set_config('pgqueue.claim_full', '', false);
            END IF;
            RETURN;
        END IF;
    END IF;
    -- A paused queue (pgqueue.queue_pause) gives nothing. The shared lock is the other half of
    -- the pause's exclusive one: a pause waits for the claims already past this point to
    -- commit, and a claim that comes after it waits for the pause's commit and then sees its
    -- row (each statement here reads a fresh snapshot), so no claim slips past a pause that
    -- returned. Taken only when there is work to claim: an idle poll costs what it did.
    PERFORM pg_advisory_xact_lock_shared(1886482547, hashtext(p_queue));
    IF EXISTS (SELECT FROM pgqueue.queue_pause qp WHERE qp.queue = p_queue) THEN
        RETURN;
    END IF;
    -- In index order: unordered, the generic plan may scan the table for a row that is not
    -- there (a claim took 10 ms at 100k rows waiting, 130 ms at 1M).
    PERFORM FROM pgqueue.message m
     WHERE m.queue = p_queue AND m.tenant > first_tenant AND m.vt <= now()
     ORDER BY m.tenant LIMIT 1;
    IF NOT FOUND AND NOT batched THEN
        RETURN QUERY
        WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
        picked AS (
            SELECT m.msg_id FROM pgqueue.message m
            WHERE m.queue = p_queue AND m.tenant = first_tenant AND m.vt <= now()
            ORDER BY m.priority DESC, m.msg_id
            LIMIT p_limit
            FOR UPDATE OF m SKIP LOCKED
        ),
        claimed AS (
            UPDATE pgqueue.message m
            SET vt = now() + make_interval(secs => p_lease),
                read_ct = m.read_ct + 1,
                claimed_by = p_worker_id,
                claimed_at = now(),
                claim_token = pgqueue.new_claim_token()
            FROM picked, async
            WHERE m.msg_id = picked.msg_id
            RETURNING m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority,
                      m.tenant, m.read_ct, m.enqueued_at,
                      extract(epoch FROM m.deadline - now())::float8 AS deadline_in,
                      extract(epoch FROM now() - m.enqueued_at)::float8 AS waited,
                      m.claim_token,
                      -- A call's claim commits synchronously (see above).
                      CASE WHEN m.reply_key IS NOT NULL
                           THEN set_config('synchronous_commit', durable, true) END AS durable
        )
        SELECT c.msg_id, c.queue, c.task_name, c.payload, c.reply_key, c.priority, c.tenant,
               c.read_ct, c.enqueued_at, c.deadline_in, c.waited, 1::bigint AS walked,
               first_tenant AS last_tenant, c.claim_token
        FROM claimed c
        ORDER BY c.priority DESC, c.msg_id;
        GET DIAGNOSTICS got = ROW_COUNT;
        IF p_limit > 1 AND got = p_limit THEN
            PERFORM set_config('pgqueue.claim_full', p_queue, false);
        END IF;
        RETURN;
    ELSIF NOT FOUND THEN
        IF from_frontier THEN
            RETURN QUERY
            WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
            -- From the frontier on, in the claim's order, within the frontier's priority: the
            -- rows the other workers hold lie behind it.
            ahead AS (
                SELECT m.msg_id FROM pgqueue.message m
                WHERE m.queue = p_queue AND m.tenant = first_tenant
                  AND m.priority = fr_priority AND m.msg_id > fr_msg_id AND m.vt <= now()
                ORDER BY m.msg_id
                LIMIT p_limit
                FOR UPDATE OF m SKIP LOCKED
            ),
            -- From the head for what that could not fill: rows behind the frontier visible
            -- again (a retry's backoff passed, a lease lapsed, a release, a claim rolled back),
            -- other priorities. Not run at all when the frontier's walk filled it (LIMIT 0).
            behind AS (
                SELECT m.msg_id FROM pgqueue.message m
                WHERE m.queue = p_queue AND m.tenant = first_tenant AND m.vt <= now()
                  AND m.msg_id NOT IN (SELECT a.msg_id FROM ahead a)
                ORDER BY m.priority DESC, m.msg_id
                LIMIT (SELECT p_limit - count(*) FROM ahead)
                FOR UPDATE OF m SKIP LOCKED
            ),
            claimed AS (
                UPDATE pgqueue.message m
                SET vt = now() + make_interval(secs => p_lease),
                    read_ct = m.read_ct + 1,
                    claimed_by = p_worker_id,
                    claimed_at = now(),
                    claim_token = pgqueue.new_claim_token()
                -- By primary key from an array: a join with the CTEs (estimated at 1,500 rows
                -- each) planned a scan of the table.
                FROM (SELECT ARRAY(SELECT a.msg_id FROM ahead a)
                             || ARRAY(SELECT b.msg_id FROM behind b) AS ids) picked,
                     async
                WHERE m.msg_id = ANY (picked.ids)
                RETURNING m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority,
                          m.tenant, m.read_ct, m.enqueued_at,
                          extract(epoch FROM m.deadline - now())::float8 AS deadline_in,
                          extract(epoch FROM now() - m.enqueued_at)::float8 AS waited,
                          m.claim_token,
                          -- A call's claim commits synchronously (see above).
                          CASE WHEN m.reply_key IS NOT NULL
                               THEN set_config('synchronous_commit', durable, true) END AS durable
            )
            SELECT c.msg_id, c.queue, c.task_name, c.payload, c.reply_key, c.priority, c.tenant,
                   c.read_ct, c.enqueued_at, c.deadline_in, c.waited, 1::bigint AS walked,
                   first_tenant AS last_tenant, c.claim_token
            FROM claimed c
            -- Where this claim stopped, for the frontier (an InitPlan: computed once).
            WHERE (SELECT set_config('pgqueue.claim_stop',
                                     s.priority || ' ' || s.msg_id || ' '
                                     || ((SELECT count(*) FROM ahead) < p_limit), true)
                   FROM claimed s ORDER BY s.priority, s.msg_id DESC LIMIT 1) IS NOT NULL
            ORDER BY c.priority DESC, c.msg_id;
        ELSE
            RETURN QUERY
            WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
            picked AS (
                SELECT m.msg_id FROM pgqueue.message m
                WHERE m.queue = p_queue AND m.tenant = first_tenant AND m.vt <= now()
                ORDER BY m.priority DESC, m.msg_id
                LIMIT p_limit
                FOR UPDATE OF m SKIP LOCKED
            ),
            claimed AS (
                UPDATE pgqueue.message m
                SET vt = now() + make_interval(secs => p_lease),
                    read_ct = m.read_ct + 1,
                    claimed_by = p_worker_id,
                    claimed_at = now(),
                    claim_token = pgqueue.new_claim_token()
                FROM picked, async
                WHERE m.msg_id = picked.msg_id
                RETURNING m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority,
                          m.tenant, m.read_ct, m.enqueued_at,
                          extract(epoch FROM m.deadline - now())::float8 AS deadline_in,
                          extract(epoch FROM now() - m.enqueued_at)::float8 AS waited,
                          m.claim_token,
                          -- A call's claim commits synchronously (see above).
                          CASE WHEN m.reply_key IS NOT NULL
                               THEN set_config('synchronous_commit', durable, true) END AS durable
            )
            SELECT c.msg_id, c.queue, c.task_name, c.payload, c.reply_key, c.priority, c.tenant,
                   c.read_ct, c.enqueued_at, c.deadline_in, c.waited, 1::bigint AS walked,
                   first_tenant AS last_tenant, c.claim_token
            FROM claimed c
            -- Where this claim stopped, for the frontier (an InitPlan: computed once).
            WHERE (SELECT set_config('pgqueue.claim_stop',
                                     s.priority || ' ' || s.msg_id || ' ' || true, true)
                   FROM claimed s ORDER BY s.priority, s.msg_id DESC LIMIT 1) IS NOT NULL
            ORDER BY c.priority DESC, c.msg_id;
        END IF;
        -- Only a full claim of a batch (more is likely waiting) moves the frontier, to its
        -- last row in the index's order: one call at a time on an idle queue writes nothing.
        -- Never waited for: a claim that cannot lock the frontier at once leaves it to the
        -- claim holding it. A walk from the head places it where it stopped (back too, to
        -- rows visible again) and counts a move; a walk from the frontier moves it forward
        -- only, and only if no walk from the head moved it since this claim read it.
        GET DIAGNOSTICS got = ROW_COUNT;
        IF got < p_limit THEN
            PERFORM set_config('pgqueue.claim_full', '', false);
        ELSE
            stop := string_to_array(current_setting('pgqueue.claim_stop'), ' ');
            IF fr_found THEN
                UPDATE pgqueue.claim_frontier f
                SET tenant = first_tenant, priority = stop[1]::smallint, msg_id = stop[2]::bigint,
                    moves = f.moves + CASE WHEN stop[3]::boolean THEN 1 ELSE 0 END,
                    walked_at = CASE WHEN stop[3]::boolean THEN now() ELSE f.walked_at END
                WHERE f.queue = (SELECT k.queue FROM pgqueue.claim_frontier k
                                  WHERE k.queue = p_queue FOR UPDATE SKIP LOCKED)
                  AND (stop[3]::boolean
                       OR (f.moves = fr_moves AND f.tenant = first_tenant
                           AND (f.priority > stop[1]::smallint
                                OR (f.priority = stop[1]::smallint
                                    AND f.msg_id < stop[2]::bigint))));
            ELSE
                INSERT INTO pgqueue.claim_frontier (queue, tenant, priority, msg_id)
                VALUES (p_queue, first_tenant, stop[1]::smallint, stop[2]::bigint)
                ON CONFLICT DO NOTHING;
            END IF;
        END IF;
        RETURN;
    END IF;
    RETURN QUERY
    WITH RECURSIVE tenants(tenant, n) AS (
        (SELECT m.tenant, 1 FROM pgqueue.message m
          WHERE m.queue = p_queue AND m.tenant >= p_tenant_cursor AND m.vt <= now()
          ORDER BY m.tenant LIMIT 1)
        UNION ALL
        SELECT (SELECT m.tenant FROM pgqueue.message m
                 WHERE m.queue = p_queue AND m.tenant > t.tenant AND m.vt <= now()
                 ORDER BY m.tenant LIMIT 1), t.n + 1
        FROM tenants t
        WHERE t.tenant IS NOT NULL AND t.n < p_tenant_span
    ),
    candidates AS (
        SELECT c.msg_id, c.priority, c.tenant,
               row_number() OVER (PARTITION BY c.tenant ORDER BY c.priority DESC, c.msg_id) AS rank
        FROM tenants t
        CROSS JOIN LATERAL (
            SELECT m.msg_id, m.priority, m.tenant FROM pgqueue.message m
            WHERE m.queue = p_queue AND m.tenant = t.tenant AND m.vt <= now()
            ORDER BY m.priority DESC, m.msg_id
            -- Over-fetched: SKIP LOCKED applies later, and concurrent claimers see the same rows.
            LIMIT p_candidates
        ) c
        WHERE t.tenant IS NOT NULL
    ),
    -- Within a priority, each tenant's first row, then each tenant's second, ...; tenants that tie
    -- are shuffled per claim (p_salt), so a claim of one row does not always favour the same one.
    ordered AS (
        SELECT array_agg(msg_id ORDER BY priority DESC, rank, md5(tenant || p_salt), msg_id) AS ids
        FROM candidates
    ),
    async AS (SELECT set_config('synchronous_commit', 'off', true)),
    picked AS (
        -- By primary key from the short candidate list: never a scan of the backlog. The
        -- candidates' positions come WITH ORDINALITY (array_position per row was quadratic:
        -- 24 ms for a claim of 256).
        SELECT m.msg_id, u.pos
        FROM ordered o
        CROSS JOIN LATERAL unnest(o.ids) WITH ORDINALITY AS u(id, pos)
        JOIN pgqueue.message m ON m.msg_id = u.id
        WHERE m.vt <= now()
        ORDER BY u.pos
        LIMIT p_limit
        FOR UPDATE OF m SKIP LOCKED
    ),
    claimed AS (
        UPDATE pgqueue.message m
        SET vt = now() + make_interval(secs => p_lease),
            read_ct = m.read_ct + 1,
            claimed_by = p_worker_id,
            claimed_at = now(),
            claim_token = pgqueue.new_claim_token()
        FROM picked, async
        WHERE m.msg_id = picked.msg_id
        RETURNING m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority, m.tenant,
                  m.read_ct, m.enqueued_at,
                  extract(epoch FROM m.deadline - now())::float8 AS deadline_in,
                  extract(epoch FROM now() - m.enqueued_at)::float8 AS waited,
                  m.claim_token,
                  CASE WHEN m.reply_key IS NOT NULL
                       THEN set_config('synchronous_commit', durable, true) END AS durable
    )
    -- In the claim's order (RETURNING has none): a worker runs a batch in the order it gets it.
    SELECT c.msg_id, c.queue, c.task_name, c.payload, c.reply_key, c.priority, c.tenant,
           c.read_ct, c.enqueued_at, c.deadline_in, c.waited,
           (SELECT count(*) FROM tenants WHERE tenant IS NOT NULL) AS walked,
           (SELECT max(tenant) FROM tenants) AS last_tenant, c.claim_token
    FROM claimed c JOIN picked p USING (msg_id)
    ORDER BY p.pos;
END
$claim$;

-- Replies only for their caller: see migration 0006. Grant pgqueue.reply_secret with the
-- result table to the roles that call and work.
CREATE TABLE pgqueue.reply_secret (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret  text NOT NULL DEFAULT md5(gen_random_uuid()::text) || md5(gen_random_uuid()::text)
);
INSERT INTO pgqueue.reply_secret DEFAULT VALUES;

-- Whoever could read replies before keeps calling and working: every role with SELECT on the
-- result table (PUBLIC included) gets SELECT on the secret too. Later roles: grant both.
DO $grant$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles
             WHERE NOT rolsuper AND rolname !~ '^pg_'
               AND has_table_privilege(oid, 'pgqueue.result', 'SELECT')
               AND oid <> (SELECT relowner FROM pg_class WHERE oid = 'pgqueue.result'::regclass)
    LOOP
        EXECUTE format('GRANT SELECT ON pgqueue.reply_secret TO %I', r.rolname);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a
               WHERE c.oid = 'pgqueue.result'::regclass AND a.grantee = 0
                 AND a.privilege_type = 'SELECT') THEN
        GRANT SELECT ON pgqueue.reply_secret TO PUBLIC;
    END IF;
END
$grant$;

-- The channel of a reply's NOTIFY. A client that listens names its reply keys
-- "<16 hex>.<uuid>" and listens on the keyed hash of its 16 hex, so a reply wakes only its own
-- caller's process; any other key goes to the shared channel pgqueue_reply.
CREATE FUNCTION pgqueue.reply_channel(reply_key text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $channel$
    SELECT CASE WHEN reply_key ~ '^[0-9a-f]{16}[.]'
                THEN 'pgqueue_reply_' || left(encode(sha256(convert_to(
                         (SELECT s.secret FROM pgqueue.reply_secret s) || left(reply_key, 16),
                         'UTF8')), 'hex'), 32)
                ELSE 'pgqueue_reply' END
$channel$;

-- The wake-up payload of a reply key: the key itself on a private channel (short keys only:
-- NOTIFY takes < 8000 bytes), otherwise "w:" and a hash of it, which wakes the caller waiting
-- on that key without telling anyone else the key.
CREATE FUNCTION pgqueue.reply_wake(reply_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $wake$
    SELECT CASE WHEN reply_key ~ '^[0-9a-f]{16}[.]' AND octet_length(reply_key) <= 255
                THEN reply_key
                ELSE 'w:' || left(encode(sha256(convert_to(reply_key, 'UTF8')), 'hex'), 32) END
$wake$;

-- The NOTIFY payload of a stored reply. A client that reads replies from the payload names its
-- keys "<16 hex>.i.<uuid>"; for such a key the payload is the reply row as JSON (k: key,
-- s: status, r: result, e: error), built from the stored row so it reads exactly as the row
-- would; it goes to that client's private channel only. Every other key, and a reply too big
-- for a payload (NOTIFY takes < 8000 bytes), gets its wake-up (pgqueue.reply_wake): the caller
-- then reads the row.
CREATE FUNCTION pgqueue.reply_note(
    reply_key text, status pgqueue.result_status, result jsonb, error text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $note$
    SELECT CASE
        WHEN reply_key IS NULL THEN NULL  -- not stored: the caller is notified by key alone
        WHEN reply_key !~ '^[0-9a-f]{16}[.]i[.]' OR octet_length(reply_key) > 255
             OR coalesce(pg_column_size(result), 0) + octet_length(error) > 7000
            THEN pgqueue.reply_wake(reply_key)
        ELSE (SELECT CASE WHEN octet_length(n.note) < 7900 THEN n.note
                          ELSE pgqueue.reply_wake(reply_key) END
              FROM (SELECT json_build_object('k', reply_key, 's', status, 'r', result,
                                             'e', error)::text AS note) AS n)
    END
$note$;

-- LISTENs on the private channel of the reply keys starting with p_prefix (16 hex) and on the
-- shared channel; returns the private channel's name. Run as a function so that the name,
-- which is the capability to read and forge this client's replies, never appears in the
-- session's query text (pg_stat_activity).
CREATE FUNCTION pgqueue.listen_replies(p_prefix text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $listen$
DECLARE
    channel text := pgqueue.reply_channel(p_prefix || '.');
BEGIN
    IF p_prefix !~ '^[0-9a-f]{16}$' THEN
        RAISE EXCEPTION 'reply key prefix must be 16 hex digits, got %', p_prefix;
    END IF;
    EXECUTE format('LISTEN %I', channel);
    LISTEN pgqueue_reply;
    RETURN channel;
END
$listen$;

-- Unique jobs (issue 18): at most one message per unique key while it waits or runs (the
-- worker deletes a settled message, which frees the key), optionally for a window after.
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

-- Cancels one message, named by msg_id or (p_msg_id null) by reply key, in one statement (see
-- pgqueue.cancelling). The delete waits for a claim in flight on the row (its lock), so a message
-- is either cancelled before any worker holds it or while one does: never both, never missed.
-- Outcomes: 'cancelled' (state 'waiting' or 'running': a worker held a live lease), 'already_done'
-- (state 'finished', 'dead_lettered' or 'cancelled', detail saying what is known), 'unknown'.
-- A finished message leaves no row (the ack deletes it): a msg_id that was issued (at most the
-- sequence's last value) but is neither queued nor dead-lettered is reported finished.
CREATE FUNCTION pgqueue.cancel(
    p_msg_id bigint, p_reply_key text, p_by text, p_result_ttl double precision,
    p_max_reply_key_bytes integer
) RETURNS TABLE (
    outcome text, state text, msg_id bigint, queue text, task_name text, reply_key text,
    claimed_by text, detail text
) LANGUAGE plpgsql VOLATILE AS $cancel$
#variable_conflict use_column
DECLARE
    m pgqueue.message%ROWTYPE;
    running boolean;
    why text;
    dl record;
    last_id bigint;
    seen text := 'the last id issued is';
    stored text;
BEGIN
    IF p_msg_id IS NOT NULL THEN
        DELETE FROM pgqueue.message d WHERE d.msg_id = p_msg_id RETURNING d.* INTO m;
    ELSE
        DELETE FROM pgqueue.message d
        WHERE d.msg_id = (SELECT x.msg_id FROM pgqueue.message x
                          WHERE x.reply_key = p_reply_key ORDER BY x.msg_id LIMIT 1)
        RETURNING d.* INTO m;
    END IF;
    IF FOUND THEN
        running := m.claimed_by IS NOT NULL AND m.vt > now();
        why := CASE WHEN running THEN format('cancelled while running on %s', m.claimed_by)
                    ELSE 'cancelled while waiting' END
               || CASE WHEN coalesce(p_by, '') <> '' THEN ' by ' || p_by ELSE '' END;
        INSERT INTO pgqueue.dead_letter
            (msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct,
             reason)
        VALUES (m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority, m.tenant,
                m.enqueued_at, m.read_ct, why);
        IF m.reply_key IS NOT NULL AND octet_length(m.reply_key) <= p_max_reply_key_bytes THEN
            INSERT INTO pgqueue.result AS r (reply_key, status, result, error, expires_at)
            VALUES (m.reply_key, 'cancelled', NULL, why,
                    now() + make_interval(secs => p_result_ttl))
            ON CONFLICT (reply_key) DO NOTHING
            RETURNING r.reply_key INTO stored;
            IF stored IS NOT NULL AND pg_notification_queue_usage() < 0.5 THEN
                PERFORM pg_notify(pgqueue.reply_channel(m.reply_key),
                                  coalesce(pgqueue.reply_note(m.reply_key, 'cancelled', NULL, why),
                                           pgqueue.reply_wake(m.reply_key)));
            END IF;
        END IF;
        IF m.claimed_by IS NOT NULL THEN
            -- The worker holding it kills the run (its next renewal finds the row gone anyway);
            -- also one whose lease lapsed, which may still be running it.
            PERFORM pg_notify('pgqueue_cancel', m.msg_id::text);
        END IF;
        RETURN QUERY SELECT 'cancelled'::text, CASE WHEN running THEN 'running' ELSE 'waiting' END,
                            m.msg_id, m.queue, m.task_name, m.reply_key, m.claimed_by, why;
        RETURN;
    END IF;
    SELECT d.msg_id, d.queue, d.task_name, d.reply_key, d.reason INTO dl
    FROM pgqueue.dead_letter d
    WHERE (p_msg_id IS NOT NULL AND d.msg_id = p_msg_id)
       OR (p_msg_id IS NULL AND d.reply_key = p_reply_key)
    ORDER BY d.dl_id DESC LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT 'already_done'::text,
                            CASE WHEN dl.reason LIKE 'cancelled%' THEN 'cancelled'
                                 ELSE 'dead_lettered' END,
                            dl.msg_id, dl.queue, dl.task_name, dl.reply_key, NULL::text, dl.reason;
        RETURN;
    END IF;
    IF p_msg_id IS NULL THEN
        SELECT r.status::text INTO stored FROM pgqueue.result r WHERE r.reply_key = p_reply_key;
        IF FOUND THEN
            RETURN QUERY SELECT 'already_done'::text, 'finished'::text, NULL::bigint, NULL::text,
                                NULL::text, p_reply_key, NULL::text,
                                format('its reply is stored (%s)', stored);
            RETURN;
        END IF;
        RETURN QUERY SELECT 'unknown'::text, NULL::text, NULL::bigint, NULL::text, NULL::text,
                            p_reply_key, NULL::text,
                            'no message and no reply with this reply key: never sent, or its '
                            'reply was already taken or has expired'::text;
        RETURN;
    END IF;
    BEGIN
        last_id := pg_sequence_last_value(
            pg_get_serial_sequence('pgqueue.message', 'msg_id')::regclass);
    EXCEPTION WHEN insufficient_privilege THEN
        last_id := NULL;
    END;
    IF last_id IS NULL THEN
        -- A role that may enqueue need not read the sequence (an identity column needs no grant;
        -- without it the value reads as null, or the call fails): the highest id still on
        -- record is a lower bound of what was issued.
        SELECT greatest((SELECT max(x.msg_id) FROM pgqueue.message x),
                        (SELECT max(d.msg_id) FROM pgqueue.dead_letter d)) INTO last_id;
        seen := 'the highest id on record is';
    END IF;
    IF last_id IS NOT NULL AND p_msg_id BETWEEN 1 AND last_id THEN
        RETURN QUERY SELECT 'already_done'::text, 'finished'::text, p_msg_id, NULL::text,
                            NULL::text, NULL::text, NULL::text,
                            'no longer queued or running and not in the dead-letter table: it finished (or '
                            'its enqueue never committed)'::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'unknown'::text, NULL::text, p_msg_id, NULL::text, NULL::text, NULL::text,
                        NULL::text,
                        format('no message has this id (%s %s)', seen,
                               coalesce(last_id::text, 'none'));
END
$cancel$;

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
