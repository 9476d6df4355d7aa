-- 0004: a claim that finds one tenant waiting (no tenant keys: the usual request-reply queue)
-- skips the interleaving of tenants, whose plan cost ~0.15 ms of executor start-up on every
-- claim however few rows it returned; an empty claim is one index probe. Same signature and
-- result, so workers of any version use it.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

-- The claim (architecture §3.1) as a function: PL/pgSQL keeps its plan per session, so a worker
-- behind a transaction pooler (which cannot keep prepared statements) does not pay ~1 ms of
-- planning on every poll. It walks up to p_tenant_span tenants with visible work (from
-- p_tenant_cursor, so many tenants rotate through successive claims), takes each tenant's best
-- rows, interleaves them (priority, then each tenant's rank, then FIFO; tenants that tie are
-- shuffled by p_salt), and locks what is free with SKIP LOCKED, returning rows in that order.
-- With one tenant waiting (no tenant keys: the usual request-reply queue) that order is simply
-- priority, then FIFO, and a plain ordered SKIP LOCKED claim gives it at half the server time.
-- Committed asynchronously: a lost claim commit only makes the rows claimable again.
CREATE OR REPLACE FUNCTION pgqueue.claim(
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
