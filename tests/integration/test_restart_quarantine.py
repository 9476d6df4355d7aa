"""The restart quarantine and the claim taken back (architecture §3.4, migration 0014, issue 14).

Claims commit asynchronously, so a Postgres crash can lose a claim whose worker already runs the
task: the row is then as it was before that claim. Crash recovery empties the unlogged
``pgqueue.server_epoch``; the first claim that finds it empty holds the waiting calls back for
the quarantine, and the worker that lost a claim takes it back with its next renew (it renews at
once on every reconnect). Here the crash's two effects are made by hand on a live server (the
unlogged table emptied, the claim's row put back as it was); tests/faults/test_outages.py crashes
a real one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgqueue import sqlfiles
from pgqueue.claiming import claim_params, claimed_from_row, held_fence
from pgqueue.store import leases


def _connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def _enqueue(conn: psycopg.Connection[Any], reply_key: str | None) -> int:
    row = conn.execute(
        "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key) "
        "VALUES ('q', 't', '{}', %s) RETURNING msg_id",
        (reply_key,),
    ).fetchone()
    assert row is not None
    return int(row["msg_id"])


def _claim(conn: psycopg.Connection[dict[str, Any]], quarantine: float = 10.0) -> list[Any]:
    params = claim_params("q", 10, 30.0, "w-a", quarantine=quarantine, durable=False)
    return conn.execute(sqlfiles.query("claim"), params).fetchall()


def _lose(conn: psycopg.Connection[Any], msg_id: int) -> None:
    """What a crash does to a claim that had not reached the disk: the row as before it."""
    conn.execute(
        "UPDATE pgqueue.message SET vt = now(), read_ct = read_ct - 1, claimed_by = NULL, "
        "claimed_at = NULL, claim_token = NULL WHERE msg_id = %s",
        (msg_id,),
    )


def test_first_claim_after_a_crash_holds_waiting_calls_back_once(pg_dsn: str) -> None:
    with _connect(pg_dsn) as admin:
        call = _enqueue(admin, "rk-call")
        job = _enqueue(admin, None)
        # Migrated without a crash: nothing is held back.
        with _connect(pg_dsn) as before:
            assert {r["msg_id"] for r in _claim(before)} == {call, job}
        admin.execute("DELETE FROM pgqueue.message")
        call = _enqueue(admin, "rk-call2")
        job = _enqueue(admin, None)
        admin.execute("TRUNCATE pgqueue.server_epoch")  # what crash recovery does
        with _connect(pg_dsn) as worker:
            got = _claim(worker, quarantine=30.0)
            # The job is at least once and goes at once; the call waits out the quarantine.
            assert [r["msg_id"] for r in got] == [job]
            assert _claim(worker) == []
        epoch = admin.execute("SELECT held, held_until - now() AS left FROM pgqueue.server_epoch")
        row = epoch.fetchone()
        assert row is not None and row["held"] == 1
        assert 25 < row["left"].total_seconds() <= 30
        # Seen once: a later session's claim changes nothing more.
        with _connect(pg_dsn) as later:
            assert _claim(later) == []
        vt_left = admin.execute(
            "SELECT extract(epoch FROM vt - now()) AS s FROM pgqueue.message WHERE msg_id = %s",
            (call,),
        ).fetchone()
        assert vt_left is not None and 25 < vt_left["s"] <= 30


def test_quarantine_zero_holds_nothing_back(pg_dsn: str) -> None:
    with _connect(pg_dsn) as admin:
        call = _enqueue(admin, "rk-zero")
        admin.execute("TRUNCATE pgqueue.server_epoch")
        with _connect(pg_dsn) as worker:
            assert [r["msg_id"] for r in _claim(worker, quarantine=0)] == [call]


def test_renew_takes_back_a_lost_claim_of_the_same_row_only(pg_dsn: str) -> None:
    with _connect(pg_dsn) as admin, _connect(pg_dsn) as worker:
        ids = [_enqueue(admin, f"rk-{i}") for i in range(3)]
        held = [claimed_from_row(r, 0.0) for r in _claim(worker)]
        assert [m.msg_id for m in held] == ids
        lost, taken, replaced = ids
        for msg_id in ids:
            _lose(admin, msg_id)
        # After the crash another worker claimed one of them (it counted read_ct up) ...
        admin.execute(
            "UPDATE pgqueue.message SET read_ct = read_ct + 1, claim_token = 7, "
            "claimed_by = 'w-b', claimed_at = now(), vt = now() + interval '30 s' "
            "WHERE msg_id = %s",
            (taken,),
        )
        # ... and one row is another message that got a msg_id a lost one had.
        admin.execute(
            "UPDATE pgqueue.message SET enqueued_at = now() + interval '1 s' WHERE msg_id = %s",
            (replaced,),
        )
        rows = leases.renew(worker, 30.0, "w-a", held_fence(held))
        assert {(r["msg_id"], r["reasserted"]) for r in rows} == {(lost, True)}
        back = admin.execute(
            "SELECT claim_token, read_ct, claimed_by, extract(epoch FROM vt - now()) AS s "
            "FROM pgqueue.message WHERE msg_id = %s",
            (lost,),
        ).fetchone()
        assert back is not None
        assert (back["claim_token"], back["read_ct"], back["claimed_by"]) == (
            held[0].claim_token,
            held[0].read_ct,
            "w-a",
        )
        assert back["s"] > 25
        # A claim that was not lost is renewed, not taken back; the ack's fence accepts it.
        again = leases.renew(worker, 30.0, "w-a", held_fence(held[:1]))
        assert [(r["msg_id"], r["reasserted"]) for r in again] == [(lost, False)]
        owner = admin.execute(
            "SELECT claim_token FROM pgqueue.message WHERE msg_id = %s", (taken,)
        ).fetchone()
        assert owner is not None and owner["claim_token"] == 7
