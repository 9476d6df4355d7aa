-- 0003: a small reply travels in its NOTIFY (pgqueue.reply_note), so a listening caller has it
-- the moment it wakes, without a round trip to read the row.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

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
