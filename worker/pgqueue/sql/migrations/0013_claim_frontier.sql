-- 0013: the single-tenant claim starts at the queue's frontier (issue 20). Claimed rows keep
-- their index entries (the claim's update is HOT), so a claim walked from the head of the queue
-- over every row the other workers hold and over the rows concurrent claims were locking, and
-- acks waited behind it: a drain with 40 workers ran at 0.44x the rate of one with 4. A claim
-- now starts where the last full claims stopped, and still walks from the head when that
-- comes back short or the frontier is more than 100 ms old.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

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

-- A batch claim of one tenant starts its walk at the queue's frontier (pgqueue.claim_frontier,
-- migration 0013) rather than at the head, and walks from the head as well for what the
-- frontier's walk could not fill, without a frontier, and (one claim of the queue at a time)
-- once the frontier is 100 ms old: a row behind it that is visible again waits at most that
-- long and one claim more. A claim of one row walks from the head, as before.
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
