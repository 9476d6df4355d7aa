"""Connections to Postgres: one place that knows about transaction poolers.

Behind a transaction pooler (PgBouncer ``pool_mode=transaction``) a session is not ours between
transactions, so prepared statements and LISTEN are off and every unit of work is one transaction.
Everything else in pgqueue goes through :func:`connect`.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from pgqueue.errors import ConfigurationError


def connect(
    dsn: str,
    *,
    pooled: bool = False,
    autocommit: bool = True,
    connect_timeout: float = 5.0,
) -> psycopg.Connection[dict[str, object]]:
    """A new connection with dict rows; autocommit unless asked otherwise."""
    if not dsn:
        raise ConfigurationError("dsn", "no database given (set PGQUEUE_DSN or --dsn)")
    conn = psycopg.connect(
        dsn,
        autocommit=autocommit,
        row_factory=dict_row,
        connect_timeout=max(1, round(connect_timeout)),
        # prepare_threshold=None disables server-side prepared statements (pooler-safe).
        prepare_threshold=None if pooled else 5,
        application_name="pgqueue",
    )
    return conn


def redact(dsn: str) -> str:
    """The DSN with any password removed, for log lines."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable dsn>"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in info.items() if k in {"host", "port", "dbname", "user"})
