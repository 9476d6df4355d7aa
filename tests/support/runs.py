"""Reading what the recording tasks of core_tasks wrote."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.core_tasks import DDL


def create_runs_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def scalar(dsn: str, sql: str, params: Any = None) -> Any:
    rows = query(dsn, sql, params)
    return rows[0][0] if rows else None
