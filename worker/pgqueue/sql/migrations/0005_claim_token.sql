-- 0005: fencing that survives a crash (issue 14). A claim used to commit asynchronously and be
-- fenced by (msg_id, read_ct): lost in a crash, a second worker re-claimed with the same
-- read_ct, so the first worker's renewals and ack acted on the second's claim, and a call ran
-- twice. Now every claim stamps a random claim_token, a claim holding a call commits
-- synchronously, and renew, ack, retry, dead letter and release are fenced by
-- (msg_id, claim_token). Workers before 0005 still fence by read_ct, which the claim keeps
-- bumping: a mixed fleet stays safe.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

ALTER TABLE pgqueue.message ADD COLUMN claim_token bigint;

-- A claim's fence: 52 random bits. Random rather than from a sequence, whose advance an
-- asynchronous commit can lose in a crash (and then hand out again); two claims of one message
-- draw the same token with a chance of 2^-52.
CREATE FUNCTION pgqueue.new_claim_token() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL RESTRICTED AS $token$
    SELECT floor(random() * 4503599627370496)::bigint
$token$;

-- The result gains a column, so the function is replaced, not altered.
DROP FUNCTION pgqueue.claim(text, integer, integer, double precision, text, text, integer, text);

-- The claim (architecture §3.1) as a function: PL/pgSQL keeps its plan per session, so a worker
-- behind a transaction pooler (which cannot keep prepared statements) does not pay ~1 ms of
-- planning on every poll. It walks up to p_tenant_span tenants with visible work (from
-- p_tenant_cursor, so many tenants rotate through successive claims), takes each tenant's best
-- rows, interleaves them (priority, then each tenant's rank, then FIFO; tenants that tie are
-- shuffled by p_salt), and locks what is free with SKIP LOCKED, returning rows in that order.
-- With one tenant waiting (no tenant keys: the usual request-reply queue) that order is simply
-- priority, then FIFO, and a plain ordered SKIP LOCKED claim gives it at half the server time.
-- A claim that holds a call (a reply-keyed message) commits synchronously (never weaker than
-- 'local', whatever the session says) unless p_durable is false (the worker's durable_claims):
-- a claim a worker was told of cannot vanish in a crash, so no second worker re-claims the call
-- and runs it again. A claim of fire-and-forget messages
-- only commits asynchronously: lost in a crash, its rows become claimable again (at least once).
-- Each claim stamps a fresh random claim_token (pgqueue.new_claim_token); every later write is
-- fenced by (msg_id, claim_token), a pair no re-claim repeats, even after a crash lost the claim
-- (read_ct repeats then, and after a release).
CREATE FUNCTION pgqueue.claim(
    p_queue text, p_limit integer, p_candidates integer, p_lease double precision,
    p_worker_id text, p_tenant_cursor text, p_tenant_span integer, p_salt text,
    p_durable boolean DEFAULT true
) RETURNS TABLE (
    msg_id bigint, queue text, task_name text, payload jsonb, reply_key text,
    priority smallint, tenant text, read_ct integer, enqueued_at timestamptz,
    deadline_in double precision, waited double precision, walked bigint, last_tenant text,
    claim_token bigint
) LANGUAGE plpgsql VOLATILE AS $claim$
#variable_conflict use_column
DECLARE
    first_tenant text;
    -- The commit mode of a claim that holds a call: never 'off' (see above).
    durable text := CASE WHEN NOT p_durable THEN 'off'
                         WHEN current_setting('synchronous_commit') = 'off' THEN 'local'
                         ELSE current_setting('synchronous_commit') END;
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
