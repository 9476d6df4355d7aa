"""What a test database's ``pg_stat_statements`` counted: how often a statement of pgqueue's ran."""

from __future__ import annotations

import psycopg


def calls(dsn: str, *like: str) -> int:
    """Runs since the last :func:`reset` of the statements of this database whose text matches
    every ``LIKE`` pattern in ``like``."""
    where = " AND ".join(["s.query LIKE %s"] * len(like)) or "true"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid "
            f"WHERE d.datname = current_database() AND {where}",
            like,
        ).fetchone()
    assert row is not None
    return int(row[0])


def reset(dsn: str) -> None:
    """Start counting afresh (the whole server's statistics)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
