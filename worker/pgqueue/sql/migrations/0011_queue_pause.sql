-- 0011: pause and resume a queue (issue 19). A paused queue keeps taking messages; no worker
-- claims from it until it is resumed. The claim itself skips it (below), so there is no window
-- between a check and a claim: a pause that returned has no claim in flight behind it.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

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

-- The claim of 0005 (architecture §3.1), now returning nothing from a paused queue.
CREATE OR REPLACE FUNCTION pgqueue.claim(
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
