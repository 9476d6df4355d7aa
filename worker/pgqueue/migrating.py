"""Applies the ordered migrations under ``sql/migrations`` to bring a database up to date.

Concurrent runs (every worker pod may run ``pgqueue migrate`` at start) are serialised by a
transaction-scoped advisory lock, and each migration commits with its version row, so a run is
idempotent and a crash mid-way leaves a consistent version.
"""

from __future__ import annotations

import logging

import psycopg

from pgqueue import db, sqlfiles
from pgqueue.errors import MigrationError

log = logging.getLogger(__name__)


def migrate(dsn: str, *, pooled: bool = False) -> list[int]:
    """Apply every pending migration; returns the versions applied (empty when up to date)."""
    applied: list[int] = []
    try:
        with db.connect(dsn, pooled=pooled, autocommit=False) as conn:
            for version, name, text in sqlfiles.migrations():
                with conn.transaction():
                    conn.execute(sqlfiles.query("migration_lock"))
                    conn.execute(sqlfiles.query("schema_version_create"))
                    done = {
                        row["version"]
                        for row in conn.execute(sqlfiles.query("schema_versions")).fetchall()
                    }
                    if version in done:
                        continue
                    log.info("applying migration %04d_%s", version, name)
                    conn.execute(text.encode())
                    conn.execute(
                        sqlfiles.query("schema_version_record"), {"version": version, "name": name}
                    )
                    applied.append(version)
    except psycopg.Error as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    return applied


def current_version(dsn: str) -> int:
    """Highest applied version (0 for an empty database)."""
    with db.connect(dsn) as conn:
        conn.execute(sqlfiles.query("schema_version_create"))
        rows = conn.execute(sqlfiles.query("schema_versions")).fetchall()
    return max((int(str(r["version"])) for r in rows), default=0)
