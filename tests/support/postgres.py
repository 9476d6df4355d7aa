"""Real-Postgres fixtures: one embedded server per session, one fresh database per test.

The schema is migrated once into a template database; each test gets ``CREATE DATABASE ...
TEMPLATE`` (a file copy, tens of milliseconds), so tests never see each other's rows.
``PGQUEUE_TEST_DSN`` points the suite at an existing server instead (restart tests then fail
loudly: they need a server they control).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from pgqueue.embedded import EmbeddedPostgres
from pgqueue.migrating import migrate

TEMPLATE = "pgqueue_template"
_counter = itertools.count()


@dataclass
class PgServer:
    """The session's Postgres server."""

    dsn: str
    host: str
    port: int
    embedded: EmbeddedPostgres | None

    def dsn_for(self, database: str) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        info["dbname"] = database
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})

    def stop(self, mode: str = "fast") -> None:
        if self.embedded is None:
            raise RuntimeError("PGQUEUE_TEST_DSN server cannot be stopped by the tests")
        self.embedded.stop(mode)

    def start(self) -> None:
        if self.embedded is None:
            raise RuntimeError("PGQUEUE_TEST_DSN server cannot be started by the tests")
        self.embedded.start()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)
                )
            )
        # A copy of a database leaves its unlogged tables empty, which pgqueue reads as a
        # server back from a crash (the restart quarantine, migration 0014); a test database
        # starts as one of a running server, like the template it was migrated as.
        with psycopg.connect(self.dsn_for(name), autocommit=True) as conn:
            conn.execute("INSERT INTO pgqueue.server_epoch DEFAULT VALUES ON CONFLICT DO NOTHING")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("PGQUEUE_TEST_DSN")
    embedded = None
    if external:
        info = psycopg.conninfo.conninfo_to_dict(external)
        server = PgServer(
            external, str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432))), None
        )
    else:
        embedded = EmbeddedPostgres().start()
        server = PgServer(embedded.dsn, embedded.host, embedded.port, embedded)
    server.drop_database(TEMPLATE)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    template_dsn = server.dsn_for(TEMPLATE)
    migrate(template_dsn)
    with psycopg.connect(template_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        yield server
    finally:
        if embedded is not None:
            embedded.cleanup()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"pgqueue_test_{os.getpid()}_{next(_counter)}"
    dsn = pg_server.create_database(name)
    try:
        yield dsn
    finally:
        pg_server.drop_database(name)
