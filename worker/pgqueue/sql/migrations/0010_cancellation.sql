-- Cancellation (issue 19): a message can be cancelled while it waits or runs. A cancelled message
-- moves to the dead-letter table (reason "cancelled ..."), a waiting caller gets a reply with the
-- status 'cancelled' (CallResult.kind "cancelled") and its NOTIFY at once, and a worker running it
-- is told on the channel pgqueue_cancel (and at its next lease renewal) to kill the run.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.
ALTER TYPE pgqueue.result_status ADD VALUE 'cancelled';

-- "Already done" answers look a msg_id up among the dead letters.
CREATE INDEX dead_letter_msg_idx ON pgqueue.dead_letter (msg_id);

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
