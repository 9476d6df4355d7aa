-- 0008: periodic tasks. One row per (schedule, tick) fired: its primary key is what makes a tick
-- fire exactly once however many workers' schedulers race for it (see the periodic_fire query).
-- Frozen history: repeats what schema.sql (the current state) and other migrations say, on purpose.

-- Ticks of periodic schedules (@pgqueue.periodic), one row per tick fired; the message it enqueued
-- is msg_id. The scheduler inserts the row and the message in one statement, ON CONFLICT DO
-- NOTHING on the key, so of schedulers racing on a tick exactly one enqueues. cron and tz are the
-- schedule as that worker knew it, so `pgqueue schedule list` can show its next run without the
-- task modules. Old rows are pruned by the schedulers, the latest of each schedule kept.
CREATE TABLE pgqueue.periodic_tick (
    schedule   text NOT NULL,
    tick_at    timestamptz NOT NULL,
    msg_id     bigint NOT NULL,
    task_name  text NOT NULL,
    queue      text NOT NULL,
    cron       text NOT NULL,
    tz         text NOT NULL,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    fired_by   text NOT NULL DEFAULT '',
    PRIMARY KEY (schedule, tick_at)
);
