"""Migrations produce exactly the canonical schema; migrate is idempotent and serialised."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from pgqueue import migrate, sqlfiles
from tests.support.postgres import PgServer

CATALOG = """
SELECT 'column', c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'pgqueue' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r'
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'pgqueue'
UNION ALL
SELECT 'constraint', conrelid::regclass || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'pgqueue'::regnamespace
UNION ALL
SELECT 'type', t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = 'pgqueue'::regnamespace GROUP BY t.typname
UNION ALL
SELECT 'function', pg_get_functiondef(p.oid) FROM pg_proc p
WHERE p.pronamespace = 'pgqueue'::regnamespace
ORDER BY 1, 2
"""


def catalog(dsn: str) -> list[Any]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(CATALOG).fetchall()


def _empty_db(server: PgServer, name: str) -> str:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.dsn_for(name)


def test_migrations_equal_the_canonical_schema(pg_server: PgServer) -> None:
    canonical = _empty_db(pg_server, "schema_canonical")
    migrated = _empty_db(pg_server, "schema_migrated")
    with psycopg.connect(canonical, autocommit=True) as conn:
        conn.execute(sqlfiles.schema().encode())
    applied = migrate(migrated)
    assert applied == [v for v, _, _ in sqlfiles.migrations()]
    assert catalog(migrated) == catalog(canonical)
    assert len(catalog(canonical)) > 40


def test_migrate_is_idempotent_and_serialised(pg_server: PgServer) -> None:
    dsn = _empty_db(pg_server, "schema_concurrent")
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    # Exactly one run applied each migration; the others found nothing to do.
    assert sorted(v for r in results for v in r) == [v for v, _, _ in sqlfiles.migrations()]
    assert migrate(dsn) == []
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version FROM pgqueue.schema_version ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [v for v, _, _ in sqlfiles.migrations()]
