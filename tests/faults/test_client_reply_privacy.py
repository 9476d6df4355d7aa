"""Fault matrix: a role that can only connect can neither read nor forge a reply.

Before issue 14 it could LISTEN on the shared reply channel (keys of hand-made calls), read a
client's private channel name from pg_stat_activity (its LISTEN was the session's last query)
or derive it from a reply key, and NOTIFY a made-up reply that the caller returned. Now the
private channel is a keyed hash under a secret the role cannot read, the shared channel carries
hashes only, and a reply in a payload is believed only on the private channel.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgqueue import Client, sqlfiles
from pgqueue.client import CallResult
from pgqueue.listening import wake_of
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, wait_until


@pytest.fixture
def snoop_dsn(pg_server: PgServer, pg_dsn: str) -> Iterator[str]:
    """A role with CONNECT on the database and nothing else, plus pg_read_all_stats (what a
    monitoring role has): it sees every session's query text."""
    role = f"snoop_{secrets.token_hex(4)}"
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(str(dbname)), sql.Identifier(role)
            )
        )
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    info["user"] = role
    info.pop("password", None)
    try:
        yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [role],
            )
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                    sql.Identifier(str(dbname)), sql.Identifier(role)
                )
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_connect_only_role_cannot_read_or_forge_a_reply(
    pg_dsn: str, snoop_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, tasks="tests.support.core_tasks", concurrency=1)
    with (
        Client(pg_dsn) as client,
        psycopg.connect(pg_dsn, autocommit=True) as admin,
        psycopg.connect(snoop_dsn, autocommit=True) as ear,
        psycopg.connect(snoop_dsn, autocommit=True) as mouth,
    ):
        assert client.call("t.sleep", [0], timeout=30).ok  # the first call starts the listener
        listener = client.listener
        assert listener is not None
        # Its LISTEN may come after that call's reply (which a poll can take) on a busy machine.
        wait_until(lambda: listener.live, 10, "the reply listener to be in place")

        # The role cannot read the reply table, nor the secret that names private channels.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mouth.execute("SELECT * FROM pgqueue.result")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mouth.execute("SELECT pgqueue.reply_channel(%s)", [listener.new_key()])

        # What it can see: every query text. The private channel's name is in none of them.
        texts = [
            str(r[0]) for r in ear.execute("SELECT query FROM pg_stat_activity WHERE query <> ''")
        ]
        assert texts and not any(listener.channel in t for t in texts)
        assert not any(listener.prefix in t for t in texts)

        # It listens wherever a reply could once be heard: the shared channel, and the channel
        # the old scheme derived from the key prefix.
        naive = f"pgqueue_reply_{listener.prefix}"
        ear.execute("LISTEN pgqueue_reply")
        ear.execute(sql.SQL("LISTEN {}").format(sql.Identifier(naive)))

        # A call in flight; the role learns its key (the worst case) and forges a reply.
        box: dict[str, CallResult] = {}
        caller = threading.Thread(
            target=lambda: box.setdefault("r", client.call("t.sleep", [2], timeout=30))
        )
        caller.start()

        def key_visible() -> bool:
            return admin.execute("SELECT 1 FROM pgqueue.message").fetchone() is not None

        wait_until(key_visible, 20, "the call's message")
        row = admin.execute("SELECT reply_key FROM pgqueue.message").fetchone()
        assert row is not None
        key = str(row[0])
        forged = json.dumps({"k": key, "s": "completed", "r": "forged", "e": ""})
        for channel in ("pgqueue_reply", naive):
            for payload in (forged, key, wake_of(key)):
                mouth.execute("SELECT pg_notify(%s, %s)", [channel, payload])
        caller.join(40)
        result = box["r"]
        assert result.ok and result.value == 2, result
        assert listener.refused >= 1  # the forged inline reply arrived and was not believed

        # A hand-made key waits on the shared channel: the role hears a hash, never the key.
        hand_made = f"hand-made-{secrets.token_hex(8)}"
        admin.execute(
            "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key) "
            "VALUES ('default', 't.sleep', '{\"args\": [0], \"kwargs\": {}}', %s)",
            [hand_made],
        )
        waited = client.wait_for_reply(hand_made, timeout=30)
        assert waited.ok and waited.value == 0, waited

        heard = [
            (n.channel, n.payload)
            for n in ear.notifies(timeout=1)
            if n.pid != mouth.info.backend_pid
        ]
        assert ("pgqueue_reply", wake_of(hand_made)) in heard
        for _, payload in heard:
            assert key not in payload and hand_made not in payload
            assert not payload.startswith("{")


def test_roles_that_read_replies_before_0006_can_name_their_channel_after(
    pg_server: PgServer,
) -> None:
    # An upgrade must not stop a deployed app role's acks and listens: 0006 grants the secret
    # to every role that could read the result table, and to nobody else.
    name = f"pgqueue_upgrade_{secrets.token_hex(4)}"
    app, other = f"app_{secrets.token_hex(4)}", f"other_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        for role in (app, other):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        with psycopg.connect(pg_server.dsn_for(name), autocommit=True) as conn:
            conn.execute(sqlfiles.query("schema_version_create"))
            for version, _, text in sqlfiles.migrations():
                if version == 6:
                    conn.execute(
                        sql.SQL("GRANT USAGE ON SCHEMA pgqueue TO {}").format(sql.Identifier(app))
                    )
                    conn.execute(
                        sql.SQL("GRANT SELECT ON pgqueue.result TO {}").format(sql.Identifier(app))
                    )
                conn.execute(text.encode())
            can = "SELECT has_table_privilege(%s, 'pgqueue.reply_secret', 'SELECT')"
            assert conn.execute(can, [app]).fetchone() == (True,)
            assert conn.execute(can, [other]).fetchone() == (False,)
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (app, other):
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
