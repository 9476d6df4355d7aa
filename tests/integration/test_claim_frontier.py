"""The claim's frontier (architecture §3.1, migration 0013, issue 20).

A full batch claim of one tenant records where it stopped (``pgqueue.claim_frontier``) and the
next batch claim starts its walk there instead of at the head of the queue. The frontier is
approximate: a row behind it can be visible again (a retry's backoff passed, a lease lapsed, a
release, a claim rolled back, a higher priority arrived). Each such row must still be claimed,
first in its batch (priority, then FIFO), while batches keep coming from the frontier: by the
walk from the head that a claim makes once the frontier is 100 ms old, or at once when the
frontier's walk comes back short. Another tenant's row takes the tenant path at once.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgqueue import sqlfiles
from pgqueue.claiming import claim_params
from pgqueue.store import leases
from tests.support.polling import eventually

BATCH = 4


def _connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


def _fill(conn: psycopg.Connection[Any], n: int, priority: int = 5, tenant: str = "") -> list[int]:
    rows = conn.execute(
        "INSERT INTO pgqueue.message (queue, task_name, payload, priority, tenant) "
        "SELECT 'q', 't', '{}', %s, %s FROM generate_series(1, %s) RETURNING msg_id",
        (priority, tenant, n),
    ).fetchall()
    return sorted(r["msg_id"] for r in rows)


def _claim(
    conn: psycopg.Connection[dict[str, Any]],
    limit: int = BATCH,
    lease: float = 30.0,
    worker: str = "w-a",
) -> list[dict[str, Any]]:
    return conn.execute(sqlfiles.query("claim"), claim_params("q", limit, lease, worker)).fetchall()


def _ids(rows: list[dict[str, Any]]) -> list[int]:
    return [r["msg_id"] for r in rows]


def _frontier(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT tenant, priority, msg_id, moves FROM pgqueue.claim_frontier WHERE queue = 'q'"
    ).fetchone()


def _pin(conn: psycopg.Connection[Any], fresh: bool) -> None:
    """Make the frontier look just placed (no claim walks from the head) or long stale."""
    conn.execute(
        "UPDATE pgqueue.claim_frontier SET walked_at = now() + %s * interval '1 hour' "
        "WHERE queue = 'q'",
        (1 if fresh else -1,),
    )


def _claimed_again(conn: psycopg.Connection[dict[str, Any]], wanted: int) -> list[list[int]]:
    """Claims batch after batch until one holds ``wanted``; returns the batches."""
    batches: list[list[int]] = []

    def check() -> bool:
        batches.append(_ids(_claim(conn)))
        return wanted in batches[-1]

    eventually(f"message {wanted} claimed again", check, timeout=30, interval=0.01)
    return batches


def _fence(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    return {
        "msg_ids": [r["msg_id"] for r in rows],
        "claim_tokens": [r["claim_token"] for r in rows],
    }


def test_a_full_batch_claim_places_the_frontier_and_a_claim_of_one_leaves_it(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        ids = _fill(conn, 16)
        assert _claim(conn, 1) and _frontier(conn) is None  # a claim of one: as before
        # The session's first full batch runs as before too; the next one places the frontier.
        assert _ids(_claim(conn)) == ids[1:5]
        assert _frontier(conn) is None
        assert _ids(_claim(conn)) == ids[5:9]
        assert _frontier(conn) == {"tenant": "", "priority": 5, "msg_id": ids[8], "moves": 0}
        _pin(conn, fresh=True)
        assert _ids(_claim(conn)) == ids[9:13]
        # Moved forward by the frontier's walk: no walk from the head counted.
        assert _frontier(conn) == {"tenant": "", "priority": 5, "msg_id": ids[12], "moves": 0}
        # Short of the batch: everything left, and the frontier stays where it was.
        assert _ids(_claim(conn, 8)) == ids[13:16]
        assert _frontier(conn) == {"tenant": "", "priority": 5, "msg_id": ids[12], "moves": 0}


def test_a_fresh_frontier_walks_past_a_row_behind_it_until_it_is_stale(pg_dsn: str) -> None:
    """The approximation itself, without a clock: the bound below is the frontier's age."""
    with _connect(pg_dsn) as conn:
        ids = _fill(conn, 40)
        first = _claim(conn)
        assert _ids(_claim(conn)) == ids[4:8]
        _pin(conn, fresh=True)
        leases.release(conn, _fence(first[:1]))
        assert _ids(_claim(conn)) == ids[8:12]  # from the frontier: the released row waits
        _pin(conn, fresh=False)
        # Stale: this claim walks from the head; the released row comes first, and the
        # frontier goes back to where that walk stopped.
        assert _ids(_claim(conn)) == [ids[0], *ids[12:15]]
        assert _frontier(conn) == {"tenant": "", "priority": 5, "msg_id": ids[14], "moves": 1}


def test_a_short_walk_from_the_frontier_takes_rows_behind_it_in_the_same_claim(
    pg_dsn: str,
) -> None:
    with _connect(pg_dsn) as conn:
        ids = _fill(conn, 10)
        first = _claim(conn)
        assert _ids(_claim(conn)) == ids[4:8]
        _pin(conn, fresh=True)
        leases.release(conn, _fence(first[1:3]))
        # Two rows ahead of the frontier, then the two released ones from the head, in order.
        assert _ids(_claim(conn)) == [ids[1], ids[2], ids[8], ids[9]]


def test_an_idle_queue_claims_as_before_and_a_short_claim_drops_the_hint(pg_dsn: str) -> None:
    """One call at a time on an idle queue: no frontier read, none written."""
    with _connect(pg_dsn) as conn:
        ids = _fill(conn, 12)
        assert [_ids(_claim(conn)) for _ in range(3)] == [ids[0:4], ids[4:8], ids[8:12]]
        placed = _frontier(conn)
        assert placed is not None
        assert _claim(conn) == []  # empty: the session stops reading the frontier
        (one,) = _fill(conn, 1)
        _pin(conn, fresh=True)
        assert _ids(_claim(conn)) == [one]
        assert _frontier(conn) == placed


def test_a_retry_whose_backoff_passed_is_claimed_first_in_its_batch(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        _fill(conn, 5000)
        first = _claim(conn)
        _claim(conn)
        row = first[2]
        fence = {"msg_id": row["msg_id"], "claim_token": row["claim_token"]}
        assert leases.retry(conn, fence, 0.2) is not None
        batches = _claimed_again(conn, row["msg_id"])
        assert batches[-1][0] == row["msg_id"]
        assert all(b == sorted(b) and len(b) == BATCH for b in batches)


def test_a_lapsed_lease_is_claimed_first_in_its_batch(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn, _connect(pg_dsn) as other:
        _fill(conn, 5000)
        lapsing = _ids(_claim(other, lease=0.3, worker="w-b"))
        _claim(conn)
        batches = _claimed_again(conn, lapsing[0])
        assert batches[-1] == sorted(batches[-1])
        assert batches[-1][: len(lapsing)] == lapsing  # the whole lapsed batch, in order


def test_a_release_at_shutdown_is_claimed_first_in_its_batch(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn, _connect(pg_dsn) as other:
        _fill(conn, 5000)
        held = _claim(other, worker="w-b")
        _claim(conn)
        _claim(conn)
        leases.release(other, _fence(held))
        batches = _claimed_again(conn, held[0]["msg_id"])
        assert batches[-1] == _ids(held)


def test_rows_a_rolled_back_claim_held_are_claimed_again(pg_dsn: str) -> None:
    """Rows a claim in flight had locked are skipped, the frontier moves past them, and the
    claim rolls back: they are visible behind the frontier."""
    with _connect(pg_dsn) as conn, _connect(pg_dsn) as other:
        ids = _fill(conn, 5000)
        with other.transaction(force_rollback=True):
            skipped = [_ids(_claim(other, 1, worker="w-b"))[0] for _ in range(3)]
            assert skipped == ids[:3]
            assert _ids(_claim(conn)) == ids[3:7]
            assert _ids(_claim(conn)) == ids[7:11]
        batches = _claimed_again(conn, skipped[0])
        assert batches[-1][:3] == skipped


def test_a_higher_priority_arriving_behind_the_frontier_is_claimed_first(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        _fill(conn, 5000)
        _claim(conn)
        _claim(conn)
        (urgent,) = _fill(conn, 1, priority=9)
        batches = _claimed_again(conn, urgent)
        assert batches[-1][0] == urgent
        assert _frontier(conn) is not None


def test_another_tenants_row_takes_the_tenant_path_at_once(pg_dsn: str) -> None:
    with _connect(pg_dsn) as conn:
        ids = _fill(conn, 100)
        _claim(conn)
        _claim(conn)
        _pin(conn, fresh=True)
        (other,) = _fill(conn, 1, tenant="tenant-x")
        rows = _claim(conn)
        assert {r["walked"] for r in rows} == {2}
        assert sorted(_ids(rows)[:2]) == sorted([ids[8], other])
        # The frontier's tenant ('') still starts at its frontier once tenant-x is done.
        assert _ids(_claim(conn)) == ids[11:15]


def test_frontier_plans_never_scan_the_table_at_a_big_backlog(pg_dsn: str) -> None:
    """As test_claim's plan check, for the batch claim's statements: from the frontier, from
    the head, and the frontier's move, past PL/pgSQL's five custom plans."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY pgqueue.message (queue, task_name, payload) FROM STDIN"
        ) as copy:
            copy.write(b"q\tt\t{}\n" * 30_000)
        conn.execute("VACUUM ANALYZE pgqueue.message")
    plans: list[str] = []
    with _connect(pg_dsn) as conn:
        for fresh in (True, False) * 7:
            assert len(_claim(conn, 64)) == 64
            _pin(conn, fresh)
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            conn.execute(setting.encode())
        for fresh in (True, False):
            _pin(conn, fresh)
            assert len(_claim(conn, 64)) == 64
    inner = [p for p in plans if "pgqueue.message" in p and "plan:" in p]
    assert any("ahead AS" in p for p in inner), plans
    assert any("claim_frontier f" in p and "Update" in p for p in plans), plans
    scans = [p for p in inner if "Seq Scan on message" in p]
    assert not scans, scans
