"""The worker core's statements: a message's lease, from the claim to the settle write.

The claim, the lease renewal, the release and the three settle writes (ack, retry, dead letter)
are run here and nowhere else in the worker: :mod:`pgqueue.claiming`, :mod:`pgqueue.leasing` and
:mod:`pgqueue.settling` decide what to write and what an error means (:mod:`pgqueue.dberrors`);
this module only says it to Postgres. Every write is fenced by (msg_id, claim_token), so a
statement from a worker whose lease ran out changes nothing (architecture §3.2).
"""

from __future__ import annotations

from typing import Any

from pgqueue import sqlfiles
from pgqueue.store import Conn, Row


def claim(conn: Conn, params: dict[str, Any]) -> list[Row]:
    """The claimed rows, in order (``claim``; parameters from :func:`claiming.claim_params`)."""
    return conn.execute(sqlfiles.query("claim"), params).fetchall()


def renew(conn: Conn, lease: float, worker_id: str, fence: dict[str, list[Any]]) -> list[Row]:
    """Push the fenced leases out by ``lease`` seconds and take back the claims a crash lost;
    the rows held now, each with ``reasserted`` (``renew``)."""
    params = {"lease": lease, "worker_id": worker_id, **fence}
    return conn.execute(sqlfiles.query("renew"), params).fetchall()


def release(conn: Conn, fence: dict[str, list[int]]) -> None:
    """Make the fenced messages visible at once, without counting an attempt (``release``)."""
    conn.execute(sqlfiles.query("release"), fence)


def ack(conn: Conn, params: dict[str, Any]) -> list[Row]:
    """Delete the fenced messages and store their replies; the rows it still held (``ack``)."""
    return conn.execute(sqlfiles.query("ack"), params).fetchall()


def retry(conn: Conn, fence: dict[str, int], delay: float) -> Row | None:
    """Make one fenced message visible again after ``delay`` seconds (``retry``)."""
    return conn.execute(sqlfiles.query("retry"), {**fence, "delay": delay}).fetchone()


def dead_letter(conn: Conn, params: dict[str, Any]) -> Row | None:
    """Move one fenced message to the dead-letter table, a reply if it had a caller
    (``dead_letter``)."""
    return conn.execute(sqlfiles.query("dead_letter"), params).fetchone()


def wal_writer_delay(conn: Conn) -> float:
    """The server's ``wal_writer_delay``, seconds (``wal_writer_delay``)."""
    row = conn.execute(sqlfiles.query("wal_writer_delay")).fetchone()
    return float(row["seconds"]) if row is not None else 0.2
