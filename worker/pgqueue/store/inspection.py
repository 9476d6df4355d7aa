"""What the CLI, the web console and the samplers read: per-queue totals, a queue's messages,
the gate flag's history.

Reads only; :mod:`pgqueue.admin` (each verb on a short connection of its own),
:mod:`pgqueue.web.reading` (in a bounded read-only transaction) and :mod:`pgqueue.depth` turn
the rows into what they show.
"""

from __future__ import annotations

from typing import Any

from pgqueue import sqlfiles
from pgqueue.store import Conn, Row


def queue_stats(conn: Conn) -> list[Row]:
    """Per queue: ready, in flight, delayed, dead, the oldest ready message's age, paused
    (``queue_stats``; the fields of :class:`pgqueue.admin.QueueStats`)."""
    return conn.execute(sqlfiles.query("queue_stats")).fetchall()


def queue_page(
    conn: Conn,
    queue: str,
    *,
    task: str | None,
    tenant: str | None,
    state: str,
    after: int,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` of a queue's messages in msg_id order after ``after`` (``queue_show``;
    the fields of :class:`pgqueue.admin.QueueMessage`)."""
    params = {
        "queue": queue,
        "task": task,
        "tenant": tenant,
        "state": state,
        "after": after,
        "limit": limit,
    }
    return conn.execute(sqlfiles.query("queue_show"), params).fetchall()


def web_read_limits(conn: Conn, timeout: str) -> None:
    """Bound the web console's read, in its transaction (``web_read_limits``; ``timeout`` as
    Postgres spells it, e.g. ``"2000ms"``)."""
    conn.execute(sqlfiles.query("web_read_limits"), {"timeout": timeout})


def web_messages(conn: Conn, params: dict[str, Any]) -> list[Row]:
    """The web console's page of a queue's messages, each with whether it ``matches`` the
    filters (``web_messages``; parameters from :meth:`pgqueue.web.reading.Reader.messages`)."""
    return conn.execute(sqlfiles.query("web_messages"), params).fetchall()


def flag_history(conn: Conn, key: str, limit: int) -> list[Row]:
    """The flag's last ``limit`` changes, newest first (``flag_history``)."""
    return conn.execute(sqlfiles.query("flag_history"), {"key": key, "limit": limit}).fetchall()
