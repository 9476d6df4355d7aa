"""The claim statement itself (architecture §3.1), on both of its paths.

One tenant waiting takes the plain ordered SKIP LOCKED path; two or more take the interleaving
path. Both must give the same contract: visible rows only, priority then FIFO, the limit, rows
locked by another claimer skipped, each claimed row leased, counted and stamped.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgqueue import sqlfiles
from pgqueue.claiming import claim_params


def _connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def _put(conn: psycopg.Connection[Any], *rows: tuple[str, int, str]) -> list[int]:
    """(task name, priority, tenant) each; returns the msg_ids in order."""
    return [
        conn.execute(
            "INSERT INTO pgqueue.message (queue, task_name, payload, priority, tenant) "
            "VALUES ('q', %s, '{}', %s, %s) RETURNING msg_id",
            row,
        ).fetchone()["msg_id"]  # type: ignore[index]
        for row in rows
    ]


def _claim(conn: psycopg.Connection[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    params = claim_params("q", limit, 30.0, "w-test")
    return conn.execute(sqlfiles.query("claim"), params).fetchall()


def test_one_tenant_claims_by_priority_then_fifo_and_leases_what_it_takes(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        low1, high1, low2, high2 = _put(
            conn, ("low1", 2, ""), ("high1", 8, ""), ("low2", 2, ""), ("high2", 8, "")
        )
        first = _claim(conn, 3)
        assert [r["msg_id"] for r in first] == [high1, high2, low1]
        assert {r["walked"] for r in first} == {1}
        leased = conn.execute(
            "SELECT msg_id, read_ct, claimed_by, vt > now() + interval '20 s' AS leased "
            "FROM pgqueue.message ORDER BY msg_id"
        ).fetchall()
        assert [(r["msg_id"], r["read_ct"], r["claimed_by"], r["leased"]) for r in leased] == [
            (low1, 1, "w-test", True),
            (high1, 1, "w-test", True),
            (low2, 0, None, False),
            (high2, 1, "w-test", True),
        ]
        # Leased rows are not visible: only the one left comes, then nothing.
        assert [r["msg_id"] for r in _claim(conn, 3)] == [low2]
        assert _claim(conn, 3) == []


def test_rows_locked_by_another_claimer_are_skipped_not_waited_for(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn, _connect(pg_dsn) as other:
        a, b, c = _put(conn, ("a", 5, ""), ("b", 5, ""), ("c", 5, ""))
        with other.transaction():
            other.execute("SELECT 1 FROM pgqueue.message WHERE msg_id = %s FOR UPDATE", (a,))
            conn.execute("SET lock_timeout = '2s'")  # a wait would fail the test, not hang it
            assert [r["msg_id"] for r in _claim(conn, 5)] == [b, c]


def test_two_tenants_interleave_on_the_tenant_path(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        a = _put(conn, *[(f"a{i}", 5, "tenant-a") for i in range(4)])
        b = _put(conn, *[(f"b{i}", 5, "tenant-b") for i in range(2)])
        rows = _claim(conn, 4)
        assert {r["walked"] for r in rows} == {2}
        # Each tenant's first row, then each one's second: never all four of tenant-a's.
        assert sorted(r["msg_id"] for r in rows[:2]) == sorted([a[0], b[0]])
        assert sorted(r["msg_id"] for r in rows[2:]) == sorted([a[1], b[1]])
        # What is left is one tenant's: the single-tenant path takes it in order.
        assert [r["msg_id"] for r in _claim(conn, 4)] == [a[2], a[3]]


def test_higher_priority_of_one_tenant_comes_before_the_other_tenants_rows(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        (a_low,) = _put(conn, ("a", 3, "tenant-a"))
        (b_high,) = _put(conn, ("b", 9, "tenant-b"))
        assert [r["msg_id"] for r in _claim(conn, 2)] == [b_high, a_low]


def test_an_empty_queue_and_another_queue_give_nothing(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        assert _claim(conn, 4) == []
        conn.execute(
            "INSERT INTO pgqueue.message (queue, task_name, payload) VALUES ('other', 't', '{}')"
        )
        assert _claim(conn, 4) == []


def test_claim_plans_never_scan_the_table_at_a_big_backlog(pg_dsn: str) -> None:
    """Every statement inside the claim walks an index, also once PL/pgSQL has switched to its
    generic plans (after five runs): an unordered probe for a second tenant chose a sequential
    scan there and made each claim cost ~0.1 µs per waiting row (130 ms at 1M rows)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY pgqueue.message (queue, task_name, payload) FROM STDIN"
        ) as copy:
            copy.write(b"q\tt\t{}\n" * 30_000)
        conn.execute("VACUUM ANALYZE pgqueue.message")
    plans: list[str] = []
    with _connect(pg_dsn) as conn:
        for _ in range(6):  # past PL/pgSQL's five custom plans
            assert len(_claim(conn, 1)) == 1
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            conn.execute(setting.encode())
        assert len(_claim(conn, 1)) == 1
    inner = [p for p in plans if "pgqueue.message" in p and "plan:" in p]
    assert len(inner) >= 3, plans  # two tenant probes and the claim itself
    scans = [p for p in inner if "Seq Scan on message" in p]
    assert not scans, scans
