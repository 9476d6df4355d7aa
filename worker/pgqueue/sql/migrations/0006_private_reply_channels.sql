-- Replies only for their caller (issue 14). A listening client's reply channel is no longer
-- its key prefix (which anyone who saw a key, or the LISTEN in pg_stat_activity, could
-- LISTEN on, read replies from and forge them into): it is a keyed hash of the prefix under
-- a server secret that only roles granted pgqueue.reply_secret can read (grant it with the
-- result table), and the client LISTENs through pgqueue.listen_replies, so the channel's name
-- is never in a query text. The shared channel carries a hash of the key, a wake-up only:
-- neither a reply nor a key travels where any role that can connect may LISTEN.
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.
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
CREATE OR REPLACE FUNCTION pgqueue.reply_channel(reply_key text) RETURNS text
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
CREATE OR REPLACE FUNCTION pgqueue.reply_note(
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
