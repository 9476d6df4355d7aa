-- The canonical pgqueue schema. Migrations under migrations/ must produce exactly this;
-- tests/integration/test_schema.py compares the two catalogs.
CREATE SCHEMA IF NOT EXISTS pgqueue;

CREATE TABLE pgqueue.schema_version (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per pending unit of work. A row is visible to claimers when vt <= now(); a claim pushes
-- vt out by the lease and bumps read_ct, and (msg_id, read_ct) fences every later write.
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
    claimed_at   timestamptz
);
-- Serves both the tenant walk and each tenant's (priority desc, msg_id) order in the claim.
CREATE INDEX message_claim_idx ON pgqueue.message (queue, tenant, priority DESC, msg_id);

CREATE TYPE pgqueue.result_status AS ENUM ('completed', 'failed');

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

-- The claim (DESIGN §3.1) as a function: PL/pgSQL keeps its plan per session, so a worker
-- behind a transaction pooler (which cannot keep prepared statements) does not pay ~1 ms of
-- planning on every poll. It walks up to p_tenant_span tenants with visible work (from
-- p_tenant_cursor, so many tenants rotate through successive claims), takes each tenant's best
-- rows, interleaves them (priority, then each tenant's rank, then FIFO; tenants that tie are
-- shuffled by p_salt), and locks what is free with SKIP LOCKED, returning rows in that order.
-- With one tenant waiting (no tenant keys: the usual request-reply queue) that order is simply
-- priority, then FIFO, and a plain ordered SKIP LOCKED claim gives it at half the server time.
-- Committed asynchronously: a lost claim commit only makes the rows claimable again.
CREATE FUNCTION pgqueue.claim(
    p_queue text, p_limit integer, p_candidates integer, p_lease double precision,
    p_worker_id text, p_tenant_cursor text, p_tenant_span integer, p_salt text
) RETURNS TABLE (
    msg_id bigint, queue text, task_name text, payload jsonb, reply_key text,
    priority smallint, tenant text, read_ct integer, enqueued_at timestamptz,
    deadline_in double precision, waited double precision, walked bigint, last_tenant text
) LANGUAGE plpgsql VOLATILE AS $claim$
#variable_conflict use_column
DECLARE
    first_tenant text;
BEGIN
    -- The first two tenants with visible work, from the cursor. None: nothing to claim, and an
    -- empty poll costs one index probe. One (no tenant keys, the common case): that tenant's
    -- best rows in order, with none of the interleaving below, whose plan costs ~0.15 ms of
    -- executor start-up on every claim however few rows it returns.
    SELECT m.tenant INTO first_tenant FROM pgqueue.message m
     WHERE m.queue = p_queue AND m.tenant >= p_tenant_cursor AND m.vt <= now()
     ORDER BY m.tenant LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- In index order: unordered, the generic plan may scan the table for a row that is not
    -- there (a claim took 10 ms at 100k rows waiting, 130 ms at 1M).
    PERFORM FROM pgqueue.message m
     WHERE m.queue = p_queue AND m.tenant > first_tenant AND m.vt <= now()
     ORDER BY m.tenant LIMIT 1;
    IF NOT FOUND THEN
        RETURN QUERY
        WITH picked AS (
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
                claimed_at = now()
            FROM picked, (SELECT set_config('synchronous_commit', 'off', true)) AS async
            WHERE m.msg_id = picked.msg_id
            RETURNING m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority,
                      m.tenant, m.read_ct, m.enqueued_at,
                      extract(epoch FROM m.deadline - now())::float8 AS deadline_in,
                      extract(epoch FROM now() - m.enqueued_at)::float8 AS waited
        )
        SELECT c.*, 1::bigint AS walked, first_tenant AS last_tenant
        FROM claimed c
        ORDER BY c.priority DESC, c.msg_id;
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
            claimed_at = now()
        FROM picked, (SELECT set_config('synchronous_commit', 'off', true)) AS async
        WHERE m.msg_id = picked.msg_id
        RETURNING m.msg_id, m.queue, m.task_name, m.payload, m.reply_key, m.priority, m.tenant,
                  m.read_ct, m.enqueued_at,
                  extract(epoch FROM m.deadline - now())::float8 AS deadline_in,
                  extract(epoch FROM now() - m.enqueued_at)::float8 AS waited
    )
    -- In the claim's order (RETURNING has none): a worker runs a batch in the order it gets it.
    SELECT c.*,
           (SELECT count(*) FROM tenants WHERE tenant IS NOT NULL) AS walked,
           (SELECT max(tenant) FROM tenants) AS last_tenant
    FROM claimed c JOIN picked p USING (msg_id)
    ORDER BY p.pos;
END
$claim$;

-- The channel a reply's NOTIFY goes to. A client that listens names its reply keys
-- "<16 hex>.<uuid>" and listens on pgqueue_reply_<16 hex>, so a reply wakes only its own
-- caller's process instead of every listening client; any other key (hand-made, or from a
-- client before 0002) goes to the shared channel pgqueue_reply, on which every client listens.
CREATE FUNCTION pgqueue.reply_channel(reply_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $channel$
    SELECT CASE WHEN reply_key ~ '^[0-9a-f]{16}[.]' THEN 'pgqueue_reply_' || left(reply_key, 16)
                ELSE 'pgqueue_reply' END
$channel$;

-- The NOTIFY payload of a stored reply. A client that reads replies from the payload names its
-- keys "<16 hex>.i.<uuid>"; for such a key the payload is the reply row as JSON (k: key,
-- s: status, r: result, e: error), built from the stored row so it reads exactly as the row
-- would. Every other key, and a reply too big for a payload (NOTIFY takes < 8000 bytes), gets
-- the bare key: the caller then reads the row.
CREATE FUNCTION pgqueue.reply_note(
    reply_key text, status pgqueue.result_status, result jsonb, error text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $note$
    SELECT CASE
        WHEN reply_key IS NULL THEN NULL  -- not stored: the caller is notified by key alone
        WHEN reply_key !~ '^[0-9a-f]{16}[.]i[.]'
             OR coalesce(pg_column_size(result), 0) + octet_length(error) > 7000 THEN reply_key
        ELSE (SELECT CASE WHEN octet_length(n.note) < 7900 THEN n.note ELSE reply_key END
              FROM (SELECT json_build_object('k', reply_key, 's', status, 'r', result,
                                             'e', error)::text AS note) AS n)
    END
$note$;
