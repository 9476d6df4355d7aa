-- 0001: the first schema: message, result, dead_letter, flag.
-- (pgqueue.schema_version itself is created by the migrator before any migration runs.)
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.
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
CREATE INDEX message_claim_idx ON pgqueue.message (queue, tenant, priority DESC, msg_id);

CREATE TYPE pgqueue.result_status AS ENUM ('completed', 'failed');

CREATE TABLE pgqueue.result (
    reply_key   text PRIMARY KEY,
    status      pgqueue.result_status NOT NULL,
    result      jsonb,
    error       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX result_expires_idx ON pgqueue.result (expires_at);

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

CREATE TABLE pgqueue.flag (
    key         text PRIMARY KEY,
    enabled     boolean NOT NULL,
    value       text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL DEFAULT ''
);
