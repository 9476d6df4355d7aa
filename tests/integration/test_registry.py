"""The worker registry (pgqueue.registry) and the gate flag's history trigger, on real Postgres."""

from __future__ import annotations

import uuid

import psycopg

from pgqueue import admin, registry


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
