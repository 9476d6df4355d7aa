-- 0014: calls are claimed without a WAL flush, and a crash still runs no call twice (issue 14).
-- A claim of a call committed synchronously so that a crash could not lose it while its worker
-- ran the task (a second worker would have run it again): one flush per call, RPC p50 1.2x.
-- Now the claim commits asynchronously; the first claim after a crash or a promotion holds the
-- waiting calls back for a quarantine (pgqueue.after_recovery, pgqueue.server_epoch) while the
-- workers that lost claims take them back (renew). pgqueue.claim gains p_quarantine.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

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

-- Upgraded without a crash: nothing to hold back.
INSERT INTO pgqueue.server_epoch (one, started_at) VALUES (true, now());

DROP FUNCTION pgqueue.claim(text, integer, integer, double precision, text, text, integer, text,
                            boolean);

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
