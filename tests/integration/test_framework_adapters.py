"""The SQLAlchemy and Django adapters (issue 18) on a real Postgres: the message is written in
the framework's own transaction, so it commits and rolls back with the application's rows."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import Client, ConfigurationError, Message
from pgqueue.contrib import django as pgq_django
from pgqueue.contrib import sqlalchemy as pgq_sqlalchemy


def _counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM app_order), (SELECT count(*) FROM pgqueue.message)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def app_dsn(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE app_order (id int PRIMARY KEY)")
    return pg_dsn


def test_sqlalchemy_session_commits_and_rolls_back_the_message(app_dsn: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    info = psycopg.conninfo.conninfo_to_dict(app_dsn)
    url = f"postgresql+psycopg://{info['user']}@{info['host']}:{info['port']}/{info['dbname']}"
    engine = create_engine(url)
    try:
        with Client(app_dsn) as client:

            def failed_order() -> None:
                with Session(engine) as session, session.begin():
                    session.execute(text("INSERT INTO app_order VALUES (1)"))
                    pgq_sqlalchemy.enqueue(session, client, "demo.noop")
                    raise RuntimeError("the order failed")

            with pytest.raises(RuntimeError):
                failed_order()
            assert _counts(app_dsn) == (0, 0)
            with Session(engine) as session, session.begin():
                session.execute(text("INSERT INTO app_order VALUES (1)"))
                pgq_sqlalchemy.enqueue(session, client, "demo.noop", priority=8)
                pgq_sqlalchemy.enqueue_many(session, client, [Message("demo.noop")])
                submitted = pgq_sqlalchemy.submit(session, client, "demo.echo", [1])
                assert _counts(app_dsn) == (0, 0)  # not before the commit
            assert _counts(app_dsn) == (1, 3)
            assert submitted.created
            with engine.connect() as connection:
                assert pgq_sqlalchemy.connection(connection) is not None
            with pytest.raises(ConfigurationError, match="session"):
                pgq_sqlalchemy.connection(object())
    finally:
        engine.dispose()


def _django(dsn: str) -> Any:
    import django
    from django.conf import settings

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    if not settings.configured:
        settings.configure(
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": info["dbname"],
                    "USER": info["user"],
                    "HOST": info["host"],
                    "PORT": info["port"],
                }
            },
            USE_TZ=True,
        )
        django.setup()
    from django.db import connections, transaction

    connections.close_all()
    connections["default"].settings_dict["NAME"] = info["dbname"]
    connections["default"].settings_dict["PORT"] = info["port"]
    return transaction


def test_django_atomic_commits_and_rolls_back_the_message(app_dsn: str) -> None:
    transaction = _django(app_dsn)
    from django.db import connection as django_connection

    try:
        with Client(app_dsn) as client:

            def failed_order() -> None:
                with transaction.atomic():
                    with django_connection.cursor() as cursor:
                        cursor.execute("INSERT INTO app_order VALUES (1)")
                    pgq_django.enqueue(client, "demo.noop")
                    pgq_django.submit(client, "demo.echo", [1])
                    raise RuntimeError("the order failed")

            with pytest.raises(RuntimeError):
                failed_order()
            assert _counts(app_dsn) == (0, 0)
            with transaction.atomic():
                with django_connection.cursor() as cursor:
                    cursor.execute("INSERT INTO app_order VALUES (1)")
                pgq_django.enqueue(client, "demo.noop", unique_key="order-1")
                pgq_django.enqueue_many(client, [Message("demo.noop")])
                assert _counts(app_dsn) == (0, 0)  # not before the commit
            assert _counts(app_dsn) == (1, 2)
    finally:
        django_connection.close()
