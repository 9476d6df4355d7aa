-- Every query pgqueue runs, one named entry each ("-- name: NAME" opens an entry). Parameters are
-- psycopg named placeholders; nothing here is ever formatted with user input.
-- tests/unit/test_sql_and_settings.py checks that every entry is used and every use exists.
-- queue_purge and sweep_orphans share their move-to-dead-letter CTEs on purpose: an entry is one
-- whole statement, and SQL files have no include.

-- name: enqueue
-- One message. delay and deadline are seconds from now (deadline null: none). One waiting worker
-- is woken (pgqueue.wake, migration 0012) by a NOTIFY that is delivered with this very commit
-- (and not at all if it rolls back); none when no worker waits or the message is delayed.
-- A NOTIFY queue more than half full (a listener that stopped reading holds it) would fail
-- the commit when full: the wake-up is then skipped, as workers poll anyway.
-- A call's message may commit asynchronously (%(async_commit)s): lost in a crash, it shows as the
-- caller's timeout, never as a double run, and the worker's synchronous reply commit flushes it.
WITH cfg AS (
    SELECT set_config('synchronous_commit',
                      CASE WHEN %(async_commit)s THEN 'off'
                           ELSE current_setting('synchronous_commit') END, true) AS mode
),
ins AS (
    INSERT INTO pgqueue.message (queue, task_name, payload, reply_key, priority, tenant, vt, deadline)
    VALUES (%(queue)s, %(task_name)s, %(payload)s, %(reply_key)s, %(priority)s, %(tenant)s,
            now() + make_interval(secs => %(delay)s),
            now() + make_interval(secs => %(deadline)s))
    RETURNING msg_id, queue
)
SELECT msg_id, CASE WHEN %(notify)s AND %(delay)s::float8 <= 0
                         AND pg_notification_queue_usage() < 0.5
                    THEN pgqueue.wake(queue) END AS notified,
       cfg.mode
FROM ins, cfg;

-- name: enqueue_unique
-- One message with a unique key (pgqueue.enqueue_unique, migration 0009): the new message, or the
-- one holding the key (created false, with its reply key, for a call to attach to). Only a new
-- message wakes a waiting worker; the NOTIFY is delivered with this commit, as for enqueue.
SELECT u.msg_id, u.reply_key, u.created,
       CASE WHEN u.created AND %(notify)s AND %(delay)s::float8 <= 0
                 AND pg_notification_queue_usage() < 0.5
            THEN pgqueue.wake(%(queue)s::text) END AS notified
FROM pgqueue.enqueue_unique(%(queue)s::text, %(task_name)s::text, %(payload)s::jsonb,
                            %(reply_key)s::text, %(priority)s::smallint, %(tenant)s::text,
                            %(delay)s::float8, %(deadline)s::float8, %(unique_key)s::text,
                            %(unique_for)s::float8) AS u;

-- name: enqueue_many
-- A batch in one statement: parallel arrays, one element per message; wakes as many waiting
-- workers of each queue as it has messages visible now (pgqueue.wake).
WITH ins AS (
    INSERT INTO pgqueue.message (queue, task_name, payload, reply_key, priority, tenant, vt)
    SELECT q, t, p, r, pr, tn, now() + make_interval(secs => d)
    FROM unnest(%(queues)s::text[], %(task_names)s::text[], %(payloads)s::jsonb[],
                %(reply_keys)s::text[], %(priorities)s::smallint[], %(tenants)s::text[],
                %(delays)s::float8[]) AS u(q, t, p, r, pr, tn, d)
    RETURNING msg_id, queue, vt
),
woken AS (
    SELECT pgqueue.wake(q.queue, q.n::integer)
    FROM (SELECT queue, count(*) FILTER (WHERE vt <= now()) AS n FROM ins GROUP BY queue) q
    WHERE %(notify)s AND pg_notification_queue_usage() < 0.5  -- see enqueue
)
SELECT msg_id, (SELECT count(*) FROM woken) AS notified FROM ins ORDER BY msg_id;

-- name: claim
-- The claim, one statement (architecture §3.1): see pgqueue.claim in schema.sql for how it walks
-- tenants and locks with SKIP LOCKED, stamps each row's claim_token and commits a claim that
-- holds a call synchronously when %(durable)s, and after a crash holds waiting calls back for
-- %(quarantine)s seconds (pgqueue.after_recovery). Returns the rows in the claim's order.
SELECT * FROM pgqueue.claim(%(queue)s, %(limit)s, %(candidates)s, %(lease)s, %(worker_id)s,
                            %(tenant_cursor)s, %(tenant_span)s, %(salt)s, %(durable)s,
                            %(quarantine)s);

-- name: renew
-- Extends the leases a worker still holds; rows not returned were lost (gone or re-claimed).
-- Every write of a claim's holder is fenced by (msg_id, claim_token): a re-claim stamps a new
-- token, so a worker that lost its lease can never act on another worker's claim.
-- It also takes back a claim a Postgres crash lost (claims commit asynchronously, see
-- pgqueue.after_recovery): a row exactly as it was before this worker's claim (read_ct one
-- less, and the same enqueued_at: a msg_id can be handed out again after a crash) gets the
-- claim again, token and all. No other claim came between: it would have counted read_ct up.
-- reasserted: the row's claim had been lost.
WITH held AS (
    SELECT * FROM unnest(%(msg_ids)s::bigint[], %(claim_tokens)s::bigint[],
                         %(read_cts)s::integer[], %(enqueued)s::timestamptz[])
        AS h(msg_id, claim_token, read_ct, enqueued_at)
),
renewed AS (
    UPDATE pgqueue.message m
    SET vt = now() + make_interval(secs => %(lease)s)
    FROM held
    WHERE m.msg_id = held.msg_id AND m.claim_token = held.claim_token
    RETURNING m.msg_id
),
reasserted AS (
    UPDATE pgqueue.message m
    SET vt = now() + make_interval(secs => %(lease)s), read_ct = held.read_ct,
        claim_token = held.claim_token, claimed_by = %(worker_id)s, claimed_at = now()
    FROM held
    WHERE m.msg_id = held.msg_id AND m.claim_token IS DISTINCT FROM held.claim_token
      AND m.read_ct = held.read_ct - 1 AND m.enqueued_at = held.enqueued_at
    RETURNING m.msg_id
)
SELECT msg_id, false AS reasserted FROM renewed
UNION ALL
SELECT msg_id, true FROM reasserted;

-- name: release
-- Hands claimed messages back at once (graceful shutdown): the attempt is not counted. Wakes
-- as many waiting workers as it hands back (pgqueue.wake): they would otherwise wait a poll.
WITH released AS (
    UPDATE pgqueue.message m
    SET vt = now(), read_ct = m.read_ct - 1, claimed_by = NULL, claimed_at = NULL,
        claim_token = NULL
    FROM unnest(%(msg_ids)s::bigint[], %(claim_tokens)s::bigint[]) AS held(msg_id, claim_token)
    WHERE m.msg_id = held.msg_id AND m.claim_token = held.claim_token
    RETURNING m.msg_id, m.queue
),
woken AS (
    SELECT pgqueue.wake(r.queue, count(*)::integer) AS n FROM released r GROUP BY r.queue
)
SELECT r.msg_id, (SELECT coalesce(sum(n), 0) FROM woken) AS woken FROM released r;

-- name: ack
-- Deletes finished messages and stores their replies (those with a reply key) in one statement
-- and one commit, however many finished together; each row is fenced by its claim and each reply
-- is first-write-wins. Returns the msg_ids this worker still held (the others lost their lease).
-- The NOTIFY never fails the statement over its payload: a key too long for a payload (NOTIFY
-- takes < 8000 bytes) is notified by its hash (pgqueue.reply_wake), nothing is notified while
-- the NOTIFY queue is over half full, and %(notify)s false (the worker's answer to a NOTIFY
-- that failed anyway) writes without it; the caller's poll finds the reply either way.
-- %(async_commit)s (the worker's async_acks) commits it without waiting for the WAL flush: the
-- worker keeps what it wrote until the flush is certain and writes it again after a reconnect
-- (pgqueue.settling, architecture §3.4), so a Postgres crash loses no ack while the worker lives.
WITH cfg AS (
    SELECT set_config('synchronous_commit',
                      CASE WHEN %(async_commit)s THEN 'off'
                           ELSE current_setting('synchronous_commit') END, true) AS mode
),
done AS (
    SELECT * FROM unnest(%(msg_ids)s::bigint[], %(claim_tokens)s::bigint[], %(statuses)s::text[],
                         %(results)s::text[], %(errors)s::text[])
        AS d(msg_id, claim_token, status, result, error)
),
acked AS (
    DELETE FROM pgqueue.message m
    USING done d
    WHERE m.msg_id = d.msg_id AND m.claim_token = d.claim_token
    RETURNING m.msg_id, m.reply_key
),
stored AS (
    INSERT INTO pgqueue.result (reply_key, status, result, error, expires_at)
    SELECT a.reply_key, d.status::pgqueue.result_status, d.result::jsonb, d.error,
           now() + make_interval(secs => %(result_ttl)s)
    FROM acked a JOIN done d USING (msg_id)
    WHERE a.reply_key IS NOT NULL
    ON CONFLICT (reply_key) DO NOTHING
    RETURNING reply_key, status, result, error
)
-- The NOTIFY carries the stored reply when it fits (pgqueue.reply_note); a reply that lost to an
-- earlier one (first write wins) is notified by key alone, so the caller reads the winner.
SELECT a.msg_id,
       CASE WHEN %(notify)s AND a.reply_key IS NOT NULL
                 AND pg_notification_queue_usage() < 0.5  -- else callers poll (see enqueue)
            THEN pg_notify(pgqueue.reply_channel(a.reply_key),
                           coalesce(pgqueue.reply_note(s.reply_key, s.status, s.result, s.error),
                                    pgqueue.reply_wake(a.reply_key))) END AS notified
FROM acked a LEFT JOIN stored s ON s.reply_key = a.reply_key CROSS JOIN cfg;

-- name: wal_writer_delay
-- How long an asynchronous commit may wait for its WAL flush: at most three times this
-- (PostgreSQL's docs, "Asynchronous Commit"). The worker keeps its asynchronous acks that long.
SELECT setting::float8 / 1000 AS seconds FROM pg_settings WHERE name = 'wal_writer_delay';

-- name: retry
-- Fire-and-forget failure with attempts left: push the message out by the backoff.
UPDATE pgqueue.message
SET vt = now() + make_interval(secs => %(delay)s), claimed_by = NULL, claimed_at = NULL
WHERE msg_id = %(msg_id)s AND claim_token = %(claim_token)s
RETURNING msg_id;

-- name: dead_letter
-- Moves a message to the dead-letter table with its reason, fenced by the claim, and gives a
-- waiting caller a reply at once so it does not wait for its timeout: failed, or cancelled (a
-- run the worker stopped at its caller's deadline, cancel_on_timeout). A reply key over
-- %(max_reply_key_bytes)s bytes (hand-made; a key the result table cannot index) gets no reply
-- and no NOTIFY: the dead letter alone records why.
WITH moved AS (
    DELETE FROM pgqueue.message
    WHERE msg_id = %(msg_id)s AND claim_token = %(claim_token)s
    RETURNING *
),
kept AS (
    INSERT INTO pgqueue.dead_letter
        (msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct, reason)
    SELECT msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct,
           %(reason)s
    FROM moved
    RETURNING dl_id, reply_key
),
replied AS (
    INSERT INTO pgqueue.result (reply_key, status, result, error, expires_at)
    SELECT k.reply_key, %(status)s::pgqueue.result_status, NULL, %(reason)s,
           now() + make_interval(secs => %(result_ttl)s)
    FROM kept k
    WHERE k.reply_key IS NOT NULL AND octet_length(k.reply_key) <= %(max_reply_key_bytes)s
    ON CONFLICT (reply_key) DO NOTHING
    RETURNING reply_key
)
SELECT k.dl_id,
       CASE WHEN %(notify)s AND k.reply_key IS NOT NULL
                 AND octet_length(k.reply_key) <= %(max_reply_key_bytes)s
                 AND pg_notification_queue_usage() < 0.5  -- else callers poll (see enqueue)
            THEN pg_notify(pgqueue.reply_channel(k.reply_key), pgqueue.reply_wake(k.reply_key))
       END AS notified
FROM kept k;

-- name: take_reply
-- The caller takes its reply (delete on read). Committed asynchronously: a lost delete leaves
-- the row to the retention sweep, nothing more.
DELETE FROM pgqueue.result r
USING (SELECT set_config('synchronous_commit', 'off', true)) AS async
WHERE r.reply_key = %(reply_key)s
RETURNING r.status::text AS status, r.result, r.error;

-- name: peek_reply
-- A shared reply (a unique call's, which several callers may wait on): read, not deleted; the
-- retention sweep removes it after result_ttl.
SELECT r.status::text AS status, r.result, r.error FROM pgqueue.result r
WHERE r.reply_key = %(reply_key)s;

-- name: take_replies
-- The async client's safety net: its listener takes the replies of many waiting callers in one
-- statement (delete on read, asynchronous commit, like take_reply).
DELETE FROM pgqueue.result r
USING (SELECT set_config('synchronous_commit', 'off', true)) AS async
WHERE r.reply_key = ANY(%(reply_keys)s::text[])
RETURNING r.reply_key, r.status::text AS status, r.result, r.error;

-- name: clear_replies
-- Deletes replies their callers already have (read from the NOTIFY payload), in one statement
-- per batch. Asynchronous commit, like take_reply: a lost delete leaves rows to the sweep.
DELETE FROM pgqueue.result r
USING (SELECT set_config('synchronous_commit', 'off', true)) AS async
WHERE r.reply_key = ANY(%(reply_keys)s::text[]);

-- name: listen_replies
-- A client's reply listener: LISTEN on its private channel (named by the server, never in a
-- query text) and on the shared one; returns the private channel's name (migration 0006).
SELECT pgqueue.listen_replies(%(prefix)s) AS channel;

-- name: wait_for_work
-- A worker with room whose claim came back short: it waits for a wake-up on its own channel
-- (pgqueue.wake, migration 0012). Its row commits asynchronously: lost in a crash, the worker
-- is found by the shared channel's NOTIFY or its poll.
INSERT INTO pgqueue.waiting_worker AS w (worker_id, channel, queues)
SELECT %(worker_id)s, %(channel)s, %(queues)s
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async
ON CONFLICT (worker_id) DO UPDATE
SET channel = excluded.channel, queues = excluded.queues, waiting = true,
    since = clock_timestamp();

-- name: stop_waiting
-- A worker no longer waits (it is full again, or stopping): no enqueue may take it.
UPDATE pgqueue.waiting_worker SET waiting = false
WHERE worker_id = %(worker_id)s AND waiting;

-- name: forget_waiting
-- A worker (re)connects: its own row from an earlier session goes, and so do the rows of
-- workers whose heartbeat (pgqueue.worker) is a minute old or gone (dead, or stopped hard).
DELETE FROM pgqueue.waiting_worker w
WHERE w.worker_id = %(worker_id)s
   OR NOT EXISTS (SELECT 1 FROM pgqueue.worker r
                  WHERE r.worker_id = w.worker_id AND r.heartbeat_at > now() - interval '1 minute');

-- name: vacuum_due
-- Whether the queue tables are due a vacuum: nobody (a worker or autovacuum) vacuumed the
-- message table within the interval. Read on a fresh connection, so the statistics are current.
SELECT coalesce(greatest(last_vacuum, last_autovacuum)
                < now() - make_interval(secs => %(interval)s), true) AS due
FROM pg_stat_all_tables
WHERE schemaname = 'pgqueue' AND relname = 'message';

-- name: queue_stats
-- Per queue: ready (visible now), in flight (claimed, lease running), delayed (not yet visible,
-- never claimed or backing off), dead-lettered, the age of the oldest ready message, and
-- whether it is paused (a paused queue with no messages is listed too).
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE vt <= now()) AS ready,
           count(*) FILTER (WHERE vt > now() AND claimed_by IS NOT NULL) AS in_flight,
           count(*) FILTER (WHERE vt > now() AND claimed_by IS NULL) AS delayed,
           coalesce(extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE vt <= now())), 0)::float8
               AS oldest_age
    FROM pgqueue.message GROUP BY queue
),
dead AS (
    SELECT queue, count(*) AS dead FROM pgqueue.dead_letter GROUP BY queue
)
SELECT coalesce(l.queue, d.queue, p.queue) AS queue,
       coalesce(l.ready, 0) AS ready, coalesce(l.in_flight, 0) AS in_flight,
       coalesce(l.delayed, 0) AS delayed, coalesce(d.dead, 0) AS dead,
       coalesce(l.oldest_age, 0) AS oldest_age, p.queue IS NOT NULL AS paused
FROM live l FULL JOIN dead d ON d.queue = l.queue
     FULL JOIN pgqueue.queue_pause p ON p.queue = coalesce(l.queue, d.queue)
ORDER BY 1;

-- name: dlq_list
-- reason_prefix: only the dead letters whose reason starts with it ('cancelled': the cancelled
-- messages), matched literally.
SELECT dl_id, msg_id, queue, task_name, reply_key, priority, tenant, enqueued_at, read_ct,
       reason, failed_at, payload
FROM pgqueue.dead_letter
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(reason_prefix)s::text IS NULL OR starts_with(reason, %(reason_prefix)s::text))
ORDER BY dl_id
LIMIT %(limit)s;

-- name: dlq_replay
-- Puts a dead letter back on its queue as a fresh message (attempts start again).
WITH gone AS (
    DELETE FROM pgqueue.dead_letter WHERE dl_id = %(dl_id)s RETURNING *
)
INSERT INTO pgqueue.message (queue, task_name, payload, reply_key, priority, tenant)
SELECT queue, task_name, payload, reply_key, priority, tenant FROM gone
RETURNING msg_id;

-- name: dlq_purge
WITH gone AS (
    DELETE FROM pgqueue.dead_letter
    WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
    RETURNING 1
)
SELECT count(*) AS purged FROM gone;

-- name: sweep_results
-- One batch of expired replies; the sweeper loops until a batch comes back short.
WITH batch AS (
    SELECT reply_key FROM pgqueue.result
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM pgqueue.result r USING batch WHERE r.reply_key = batch.reply_key RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: sweep_dead_letters
WITH batch AS (
    SELECT dl_id FROM pgqueue.dead_letter
    WHERE failed_at <= now() - make_interval(secs => %(retention)s)
    ORDER BY dl_id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM pgqueue.dead_letter d USING batch WHERE d.dl_id = batch.dl_id RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: flag_get
SELECT key, enabled, value, updated_at, source FROM pgqueue.flag WHERE key = %(key)s;

-- name: flag_set
-- Writes a flag; updated_at moves only when the value changes, so it says when it last flipped.
INSERT INTO pgqueue.flag AS f (key, enabled, value, source)
VALUES (%(key)s, %(enabled)s, %(value)s, %(source)s)
ON CONFLICT (key) DO UPDATE
SET enabled = excluded.enabled,
    value = excluded.value,
    source = excluded.source,
    updated_at = CASE WHEN f.enabled IS DISTINCT FROM excluded.enabled
                        OR f.value IS DISTINCT FROM excluded.value
                      THEN now() ELSE f.updated_at END
RETURNING key, enabled, value, updated_at, source,
          (xmax = 0) AS inserted;

-- name: migration_lock
-- Serialises concurrent `pgqueue migrate` runs (transaction-scoped, so pooler-safe).
SELECT pg_advisory_xact_lock(hashtext('pgqueue.migrate'));

-- name: schema_version_create
CREATE SCHEMA IF NOT EXISTS pgqueue;
CREATE TABLE IF NOT EXISTS pgqueue.schema_version (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: schema_versions
SELECT version FROM pgqueue.schema_version ORDER BY version;

-- name: schema_version_record
INSERT INTO pgqueue.schema_version (version, name) VALUES (%(version)s, %(name)s);

-- name: gate_read_limits
-- Limits of the gate's flag read, transaction-local (pooler-safe): a locked or stalled flag table
-- fails the read fast, and the gate fails closed instead of making callers wait.
SELECT set_config('statement_timeout', %(timeout)s, true),
       set_config('lock_timeout', %(timeout)s, true);

-- name: depth_sampler_lock
-- The depth sampler's session lock: one process per database counts queue depth (a scan of the
-- message table) at a time; the others stand by. Released when the sampler's session ends.
SELECT pg_try_advisory_lock(hashtextextended('pgqueue.depth_sampler', 0)) AS held;

-- name: queue_show
-- One page of a queue's messages in msg_id order, after the previous page's last id (keyset:
-- a page costs the same at any depth and nothing counts the queue). state: ready (visible now),
-- delayed (not yet visible, no worker holds it), in_flight (a worker holds its lease), or all.
SELECT msg_id, task_name, tenant, priority, read_ct, claimed_by,
       reply_key IS NOT NULL AS is_call,
       CASE WHEN vt <= now() THEN 'ready'
            WHEN claimed_by IS NULL THEN 'delayed'
            ELSE 'in_flight' END AS state,
       enqueued_at,
       extract(epoch FROM now() - enqueued_at)::float8 AS age,
       greatest(extract(epoch FROM vt - now()), 0)::float8 AS visible_in,
       extract(epoch FROM deadline - now())::float8 AS deadline_in,
       payload
FROM pgqueue.message
WHERE queue = %(queue)s AND msg_id > %(after)s
  AND (%(task)s::text IS NULL OR task_name = %(task)s::text)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
  AND (%(state)s::text = 'all'
       OR (%(state)s::text = 'ready' AND vt <= now())
       OR (%(state)s::text = 'delayed' AND vt > now() AND claimed_by IS NULL)
       OR (%(state)s::text = 'in_flight' AND vt > now() AND claimed_by IS NOT NULL))
ORDER BY msg_id
LIMIT %(limit)s;

-- name: queue_purge
-- One batch of a queue purge. Waiting messages (ready or delayed, never one a worker holds) move
-- to the dead-letter table with the reason given, so a purge can be replayed and is never silent,
-- and a waiting caller gets a failed reply and its NOTIFY at once instead of waiting in vain.
WITH batch AS (
    SELECT msg_id FROM pgqueue.message
    WHERE queue = %(queue)s
      AND (%(task)s::text IS NULL OR task_name = %(task)s::text)
      AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
      AND ((%(state)s::text IN ('ready', 'all') AND vt <= now())
           OR (%(state)s::text IN ('delayed', 'all') AND vt > now() AND claimed_by IS NULL))
    ORDER BY msg_id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
),
moved AS (
    DELETE FROM pgqueue.message m USING batch b WHERE m.msg_id = b.msg_id RETURNING m.*
),
kept AS (
    INSERT INTO pgqueue.dead_letter
        (msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct, reason)
    SELECT msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct,
           %(reason)s
    FROM moved
    RETURNING reply_key
),
replied AS (
    INSERT INTO pgqueue.result (reply_key, status, result, error, expires_at)
    SELECT reply_key, 'failed', NULL, %(reason)s, now() + make_interval(secs => %(result_ttl)s)
    FROM kept WHERE reply_key IS NOT NULL
    ON CONFLICT (reply_key) DO NOTHING
    RETURNING reply_key
),
told AS (
    SELECT pg_notify(pgqueue.reply_channel(reply_key), reply_key) FROM replied
)
SELECT (SELECT count(*) FROM kept) AS purged, (SELECT count(*) FROM told) AS callers;

-- name: sweep_orphans
-- One batch of orphaned calls: messages whose caller's deadline passed more than margin seconds
-- ago and that no worker holds (a queue nobody consumes, say a typo in queue=, or workers gone).
-- Their caller has long returned a timeout; they go to the dead-letter table with a reason naming
-- the queue and the deadline, so an unconsumed queue shows up there instead of growing forever.
-- Its moved/kept/replied steps read like queue_purge's on purpose: each named query is one
-- statement that stands alone, with the reason it writes stated in it.
WITH batch AS (
    SELECT msg_id FROM pgqueue.message
    WHERE reply_key IS NOT NULL AND deadline IS NOT NULL
      AND deadline < now() - make_interval(secs => %(margin)s)
      AND (vt <= now() OR claimed_by IS NULL)
    ORDER BY msg_id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
),
moved AS (
    DELETE FROM pgqueue.message m USING batch b WHERE m.msg_id = b.msg_id RETURNING m.*
),
kept AS (
    INSERT INTO pgqueue.dead_letter
        (msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct, reason)
    SELECT msg_id, queue, task_name, payload, reply_key, priority, tenant, enqueued_at, read_ct,
           format('orphaned: the caller''s deadline %%s passed more than %%s s before the sweep '
                  'and %%s (queue %%L)',
                  to_char(deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  %(margin)s::float8,
                  CASE WHEN read_ct = 0 THEN 'no worker ever took it'
                       ELSE format('its last worker (%%s) let the lease lapse', claimed_by) END,
                  queue)
    FROM moved
    RETURNING 1
)
SELECT count(*) AS deleted FROM kept;

-- name: schema_present
-- Whether pgqueue's version table exists, read without creating it (migrate --check may run
-- as a role that cannot create anything).
SELECT to_regclass('pgqueue.schema_version') IS NOT NULL AS present;

-- name: queue_purge_count
-- What a purge would move (the same rows as queue_purge), counted once for the question a person
-- answers on a terminal; scripts with --yes never run it.
SELECT count(*) AS n FROM pgqueue.message
WHERE queue = %(queue)s
  AND (%(task)s::text IS NULL OR task_name = %(task)s::text)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
  AND ((%(state)s::text IN ('ready', 'all') AND vt <= now())
       OR (%(state)s::text IN ('delayed', 'all') AND vt > now() AND claimed_by IS NULL));

-- The web console (pgqueue.web) and the worker registry (pgqueue.registry).

-- name: web_messages
-- One keyset page of a queue's messages, oldest first, optionally of one task, one tenant or one
-- state: by primary key after %(after)s, so a page costs the same at any depth and at a million
-- messages waiting (no count of the queue; its totals come from queue_stats, sampled). A filter
-- looks at no more than %(scan)s messages per page, so one that matches little cannot walk the
-- whole queue: the last message looked at comes back too (matches false) as the next cursor.
SELECT msg_id, task_name, tenant, priority, read_ct, has_reply, claimed_by, state, age,
       visible_in, matches
FROM (
    SELECT w.*,
           (%(task)s::text IS NULL OR task_name = %(task)s)
           AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
           AND (%(state)s::text IS NULL OR state = %(state)s) AS matches,
           row_number() OVER (ORDER BY msg_id) AS walked
    FROM (
        SELECT msg_id, task_name, tenant, priority, read_ct, reply_key IS NOT NULL AS has_reply,
               claimed_by,
               CASE WHEN vt <= now() THEN 'ready'
                    WHEN claimed_by IS NOT NULL THEN 'in_flight'
                    ELSE 'delayed' END AS state,
               extract(epoch FROM now() - enqueued_at)::float8 AS age,
               extract(epoch FROM vt - now())::float8 AS visible_in
        FROM pgqueue.message
        WHERE queue = %(queue)s AND msg_id > %(after)s
        ORDER BY msg_id
        LIMIT %(scan)s
    ) AS w
) AS x
WHERE matches OR walked = %(scan)s
ORDER BY msg_id
LIMIT %(limit)s;

-- name: web_read_limits
-- The console's reads are bounded, transaction-local (pooler-safe): a filter that would walk a
-- huge queue fails fast instead of loading the database.
SELECT set_config('statement_timeout', %(timeout)s, true);

-- name: flag_history
-- The latest changes of a flag, newest first (written by a trigger on pgqueue.flag).
SELECT change_id, key, enabled, value, source, changed_at
FROM pgqueue.flag_history
WHERE key = %(key)s
ORDER BY change_id DESC
LIMIT %(limit)s;

-- name: registry_register
-- A worker at start: its row, replacing one left by an earlier process with the same id.
INSERT INTO pgqueue.worker AS w (worker_id, host, pid, queues, slots, busy, version)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(queues)s, %(slots)s, 0, %(version)s)
ON CONFLICT (worker_id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, queues = excluded.queues, slots = excluded.slots,
    busy = 0, version = excluded.version, started_at = now(), heartbeat_at = now();

-- name: registry_beat
-- A heartbeat: how many slots are busy now. Re-creates a row that was pruned meanwhile (a worker
-- that was paused for longer than the prune age), so a live worker never drops off the list.
-- Commits asynchronously: a beat lost in a crash is the next beat's to write, and a worker
-- that turns busy beats at once, which would cost its loop a WAL flush per claim.
INSERT INTO pgqueue.worker AS w (worker_id, host, pid, queues, slots, busy, version)
SELECT %(worker_id)s, %(host)s, %(pid)s, %(queues)s, %(slots)s, %(busy)s, %(version)s
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async
ON CONFLICT (worker_id) DO UPDATE
SET busy = excluded.busy, heartbeat_at = now();

-- name: registry_deregister
DELETE FROM pgqueue.worker WHERE worker_id = %(worker_id)s;

-- name: registry_prune
-- Rows of workers that stopped beating long ago (killed without a clean stop).
DELETE FROM pgqueue.worker WHERE heartbeat_at < now() - make_interval(secs => %(older_than)s);

-- name: registry_list
SELECT worker_id, host, pid, queues, slots, busy, version, started_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
FROM pgqueue.worker
ORDER BY host, worker_id;

-- name: periodic_fire
-- One tick of a periodic schedule: the tick row and its message in one statement. The tick row
-- takes the message's id from the message sequence first, then the message is inserted only if
-- the tick row was: a scheduler that loses the race on the key (another worker fired the tick)
-- inserts nothing, and the unused id is only a gap in msg_id. It wakes one waiting worker.
WITH id AS (
    SELECT nextval(pg_get_serial_sequence('pgqueue.message', 'msg_id')) AS msg_id
),
tick AS (
    INSERT INTO pgqueue.periodic_tick (schedule, tick_at, msg_id, task_name, queue, cron, tz,
                                       fired_by)
    SELECT %(schedule)s, %(tick_at)s, id.msg_id, %(task_name)s, %(queue)s, %(cron)s, %(tz)s,
           %(worker_id)s
    FROM id
    ON CONFLICT (schedule, tick_at) DO NOTHING
    RETURNING msg_id
),
msg AS (
    INSERT INTO pgqueue.message (msg_id, queue, task_name, payload, priority)
    OVERRIDING SYSTEM VALUE
    SELECT tick.msg_id, %(queue)s, %(task_name)s, %(payload)s, %(priority)s FROM tick
    RETURNING msg_id, queue
)
SELECT msg_id, pgqueue.wake(queue) AS notified FROM msg;

-- name: periodic_last
-- The latest tick fired of each schedule named: where a starting scheduler's cursor begins.
SELECT s.schedule, t.tick_at
FROM unnest(%(schedules)s::text[]) AS s(schedule)
CROSS JOIN LATERAL (
    SELECT tick_at FROM pgqueue.periodic_tick p
    WHERE p.schedule = s.schedule
    ORDER BY tick_at DESC
    LIMIT 1
) t;

-- name: periodic_prune
-- One batch of old tick rows: before the cutoff (the scheduler's clock less the retention), and
-- never the latest of its schedule (a starting scheduler's catch-up reads it, however old).
WITH batch AS (
    SELECT t.schedule, t.tick_at FROM pgqueue.periodic_tick t
    WHERE t.tick_at < %(cutoff)s
      AND EXISTS (SELECT FROM pgqueue.periodic_tick n
                  WHERE n.schedule = t.schedule AND n.tick_at > t.tick_at)
    ORDER BY t.schedule, t.tick_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM pgqueue.periodic_tick t USING batch b
    WHERE t.schedule = b.schedule AND t.tick_at = b.tick_at
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: periodic_list
-- The latest tick of every schedule ever fired, with how many ticks are kept (pgqueue schedule
-- list).
SELECT DISTINCT ON (schedule)
       schedule, tick_at, msg_id, task_name, queue, cron, tz, fired_at, fired_by,
       count(*) OVER (PARTITION BY schedule) AS ticks_kept
FROM pgqueue.periodic_tick
ORDER BY schedule, tick_at DESC;

-- Cancellation (pgqueue.cancelling, migration 0010).

-- name: cancel
-- Cancels one message by msg_id or (msg_id null) by reply key: see pgqueue.cancel in schema.sql.
-- A reply key is looked up by a scan of the message table (no index on it: the hot path would pay
-- for one); a msg_id by its primary key.
SELECT * FROM pgqueue.cancel(%(msg_id)s::bigint, %(reply_key)s::text, %(by)s::text,
                             %(result_ttl)s::float8, %(max_reply_key_bytes)s::integer);

-- name: held_gone
-- Of the messages a worker holds, those whose row is gone: cancelled (or settled by a worker that
-- took it over after this one's lease ran out). Either way nobody wants this run any more. Asked
-- only on a cancel NOTIFY naming a held message, or when a renewal found leases lost.
SELECT held.msg_id
FROM unnest(%(msg_ids)s::bigint[]) AS held(msg_id)
WHERE NOT EXISTS (SELECT FROM pgqueue.message m WHERE m.msg_id = held.msg_id);

-- name: queue_pause_lock
-- The pause's half of the claim's lock (pgqueue.claim, migration 0011): waits for the claims of
-- the queue in flight, and holds back new ones until this transaction commits. A resume takes it
-- too, so a pause that met an existing pause reads that row before anyone deletes it.
SELECT pg_advisory_xact_lock(1886482547, hashtext(%(queue)s));

-- name: queue_pause
-- Pauses a queue; no row when it was paused already (the first pause's who, when and why stay).
INSERT INTO pgqueue.queue_pause (queue, paused_by, reason)
VALUES (%(queue)s, %(paused_by)s, %(reason)s)
ON CONFLICT (queue) DO NOTHING
RETURNING queue, paused_at, paused_by, reason;

-- name: queue_pause_get
SELECT queue, paused_at, paused_by, reason FROM pgqueue.queue_pause WHERE queue = %(queue)s;

-- name: queue_resume
-- Resumes a queue; the NOTIFY (delivered with the commit) wakes idle workers to drain it at once.
WITH gone AS (
    DELETE FROM pgqueue.queue_pause WHERE queue = %(queue)s
    RETURNING queue, paused_at, paused_by, reason
)
SELECT g.queue, g.paused_at, g.paused_by, g.reason,
       CASE WHEN pg_notification_queue_usage() < 0.5
            THEN pg_notify('pgqueue_enqueue', g.queue) END AS notified
FROM gone g;

-- name: queue_pauses
SELECT queue, paused_at, paused_by, reason FROM pgqueue.queue_pause ORDER BY queue;
