"""The migrations' bookkeeping: the version table, the lock that serialises concurrent runs.

:mod:`pgqueue.migrating` applies the migration files themselves (read through
:mod:`pgqueue.sqlfiles`, not named queries) between these statements.
"""

from __future__ import annotations

from pgqueue import sqlfiles
from pgqueue.store import Conn


def present(conn: Conn) -> bool:
    """Whether the database has pgqueue's version table at all (``schema_present``)."""
    row = conn.execute(sqlfiles.query("schema_present")).fetchone()
    return bool(row and row["present"])


def lock(conn: Conn) -> None:
    """The migrations' transaction-scoped advisory lock (``migration_lock``)."""
    conn.execute(sqlfiles.query("migration_lock"))


def create_version_table(conn: Conn) -> None:
    """Create the version table unless it exists (``schema_version_create``)."""
    conn.execute(sqlfiles.query("schema_version_create"))


def versions(conn: Conn) -> list[int]:
    """The versions applied, in no order (``schema_versions``)."""
    return [int(str(r["version"])) for r in conn.execute(sqlfiles.query("schema_versions"))]


def record(conn: Conn, version: int, name: str) -> None:
    """Record a migration as applied (``schema_version_record``)."""
    conn.execute(sqlfiles.query("schema_version_record"), {"version": version, "name": name})


def script_preamble() -> list[str]:
    """The text of the lock and of the version table's creation, each a line of a migration
    script that a team's own tool runs (``pgqueue migrate --sql``)."""
    queries = sqlfiles.queries()
    return [f"{queries['migration_lock']};", f"{queries['schema_version_create']};"]
