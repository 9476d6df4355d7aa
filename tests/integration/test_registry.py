"""The worker registry (pgqueue.registry) and the gate flag's history trigger, on real Postgres."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg

from pgqueue import Client, admin, registry
from pgqueue.supervisor import REGISTRY_BEAT_S
from tests.support.workers import WorkerFactory, wait_until


def test_register_beat_deregister_and_prune(pg_dsn: str) -> None:
    info = registry.WorkerInfo("host-a:7", ("default", "emails"), slots=4, host="host-a", pid=7)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        registry.register(conn, info)
        registry.beat(conn, info, busy=3)
        (row,) = registry.workers(conn)
        assert (row.worker_id, row.host, row.pid, row.queues) == (
            "host-a:7", "host-a", 7, ["default", "emails"]
        )  # fmt: skip
        assert (row.slots, row.busy) == (4, 3)
        assert row.version  # the installed package's version
        assert not row.stale(30.0)

        # A row pruned while its worker was paused comes back with the next beat.
        conn.execute("UPDATE pgqueue.worker SET heartbeat_at = now() - interval '2 days'")
        assert registry.workers(conn)[0].stale(30.0)
        assert registry.prune(conn) == 1
        assert registry.workers(conn) == []
        registry.beat(conn, info, busy=1)
        assert [(w.worker_id, w.busy) for w in registry.workers(conn)] == [("host-a:7", 1)]

        # A restart under the same id replaces the row; a clean stop removes it.
        registry.register(conn, info)
        assert registry.workers(conn)[0].busy == 0
        assert registry.deregister(conn, info.worker_id)
        assert registry.workers(conn) == []


def test_a_refused_registry_write_does_not_raise(pg_dsn: str) -> None:
    info = registry.WorkerInfo("host-a:8", ("default",), slots=1)
    role = f"web_nobody_{uuid.uuid4().hex[:8]}"  # roles are server-wide: one per run
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role}")
        try:
            conn.execute(f"GRANT USAGE ON SCHEMA pgqueue TO {role}")
            conn.execute(f"SET ROLE {role}")
            assert registry.register(conn, info) is False
            assert registry.beat(conn, info, busy=1) is False
            assert registry.deregister(conn, info.worker_id) is False
        finally:
            conn.execute("RESET ROLE")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_every_change_of_the_gate_is_in_its_history(pg_dsn: str) -> None:
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="cli a@x")
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="cli b@x")
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=True, value="on", source="configmap ns/g@2")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # A hand-written UPDATE is recorded too: the trigger sees every writer.
        conn.execute("UPDATE pgqueue.flag SET value = 'off', enabled = false, source = 'psql'")
        rows = conn.execute(
            "SELECT value, source FROM pgqueue.flag_history ORDER BY change_id"
        ).fetchall()
    # The rewrite with the same value is not a change.
    assert rows == [("off", "cli a@x"), ("on", "configmap ns/g@2"), ("off", "psql")]


def test_a_worker_that_turns_busy_beats_at_once(pg_dsn: str, workers: WorkerFactory) -> None:
    """The operator's pod-deletion-cost reads `busy` from the registry: a row that said "idle" for
    a whole 5 s beat after a task started would let a scale-in pick a busy pod."""
    workers.start(pg_dsn, tasks="tests.support.core_tasks", concurrency=1)
    seen: list[tuple[dt.datetime, int]] = []

    def beat() -> tuple[dt.datetime, int] | None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT heartbeat_at, busy FROM pgqueue.worker").fetchone()
        if row is not None and (not seen or seen[-1] != row):
            seen.append(row)
        return row

    # Start the task just after an idle beat: the next regular one is REGISTRY_BEAT_S away.
    wait_until(lambda: beat() is not None and len(seen) >= 2, 30, "two idle beats")
    idle_at = seen[-1][0]
    with Client(pg_dsn) as client:
        client.enqueue("t.sleep", [60])
        wait_until(lambda: (row := beat()) is not None and row[1] == 1, 30, "a busy beat")
    busy_at = seen[-1][0]
    assert (busy_at - idle_at).total_seconds() < REGISTRY_BEAT_S - 1, seen
