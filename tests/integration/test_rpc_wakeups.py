"""How a caller waits for its reply: NOTIFY when it can listen, polls as the safety net (§4)."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgqueue import Client, sqlfiles
from pgqueue.listening import wake_of
from pgqueue.settings import ClientSettings
from tests.support import runs, statements
from tests.support.workers import WorkerFactory, wait_until

# A caller reading a reply row (take_reply: the delete that returns the row).
READ_REPLY = ("DELETE FROM pgqueue.result%", "%RETURNING%")


def _listening(client: Client) -> bool:
    listener = client.listener
    return listener is not None and listener.live


def test_a_listening_caller_gets_a_small_reply_from_its_notify_and_the_row_is_cleared(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    # poll_max far above a call's duration: any read of a row would be a wasted poll, not the net.
    settings = ClientSettings(dsn=pg_dsn, poll_max=10.0)
    with Client(settings=settings) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=20).ok
        wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        statements.reset(pg_dsn)
        for i in range(20):
            result = client.call("demo.echo", [i], timeout=20)
            assert result.ok, result
            assert result.value == {"args": [i], "kwargs": {}}
        failed = client.call("demo.fail", ["boom"], timeout=20)
        assert (failed.kind, "boom" in failed.error) == ("task_error", True), failed
        assert statements.calls(pg_dsn, *READ_REPLY) == 0
        assert client.listener is not None and client.listener.inline >= 21
        # The listener deletes the rows it handed over: nothing is left for the sweep.
        runs.wait_replies_taken(pg_dsn)


def test_a_reply_too_big_for_a_notify_is_read_from_its_row(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    settings = ClientSettings(dsn=pg_dsn, poll_max=10.0)
    big = "x" * 20_000  # a NOTIFY payload must stay under 8000 bytes
    with Client(settings=settings) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=20).ok
        wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        statements.reset(pg_dsn)
        result = client.call("demo.echo", [big], timeout=20)
        assert result.ok, result
        assert result.value == {"args": [big], "kwargs": {}}
        assert statements.calls(pg_dsn, *READ_REPLY) == 1


def test_a_reply_reads_the_same_from_the_notify_as_from_the_row(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    # jsonb reorders object keys; the payload is built from the stored row, so both paths agree.
    kwargs = {"zeta": 1, "a": [1.5, None, "ü"], "mid": {"b": True, "aa": 2}}
    with (
        Client(pg_dsn) as listening,
        Client(settings=ClientSettings(dsn=pg_dsn, pooled=True)) as polling,
    ):
        assert listening.call("demo.echo", ["warm-up"], timeout=20).ok
        wait_until(lambda: _listening(listening), 10, "the reply listener to be in place")
        assert listening.listener is not None
        # The warm-up may have been polled (its reply can beat the listener's LISTEN).
        before = listening.listener.inline
        inline = listening.call("demo.echo", kwargs=kwargs, timeout=20)
        polled = polling.call("demo.echo", kwargs=kwargs, timeout=20)
    assert listening.listener.inline == before + 1
    assert inline.ok and polled.ok
    assert json.dumps(inline.value) == json.dumps(polled.value)
    assert inline.value == {"args": [], "kwargs": kwargs}


def test_a_reply_that_lost_to_an_earlier_one_is_notified_by_key_alone(pg_dsn: str) -> None:
    # First write wins (§3.4): the NOTIFY must never carry the result that was not stored.
    won, fresh, plain = "0123456789abcdef.i.won", "0123456789abcdef.i.fresh", "hand-made-key"
    with (
        psycopg.connect(pg_dsn, autocommit=True) as listen,
        psycopg.connect(pg_dsn, autocommit=True) as conn,
    ):
        # The private channel's name comes from the server (a keyed hash of the prefix).
        found = listen.execute("SELECT pgqueue.listen_replies('0123456789abcdef')").fetchone()
        assert found is not None
        channel = found[0]
        conn.execute(
            "INSERT INTO pgqueue.result (reply_key, status, error, expires_at) "
            "VALUES (%s, 'failed', 'the earlier reply', now() + interval '1 hour')",
            [won],
        )
        ids = []
        for key in (won, fresh, plain):
            row = conn.execute(
                # As if claimed: the ack is fenced by the claim's token.
                "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key, claim_token) "
                "VALUES ('q', 't', '{}', %s, 7) RETURNING msg_id",
                [key],
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        conn.execute(
            sqlfiles.query("ack"),
            {
                "msg_ids": ids,
                "claim_tokens": [7, 7, 7],
                "statuses": ["completed"] * 3,
                "results": ['{"late": true}'] * 3,
                "errors": [""] * 3,
                "result_ttl": 60.0,
                "notify": True,
                "async_commit": True,
            },
        )
        notes = {n.channel + " " + n.payload for n in listen.notifies(timeout=2, stop_after=3)}
    assert f"{channel} {won}" in notes
    # The shared channel carries a hash of a hand-made key, never the key itself.
    assert f"pgqueue_reply {wake_of(plain)}" in notes
    inline = [json.loads(n.split(" ", 1)[1]) for n in notes if n.split(" ", 1)[1].startswith("{")]
    assert inline == [{"k": fresh, "s": "completed", "r": {"late": True}, "e": ""}]


def test_a_worker_that_does_not_notify_is_caught_by_the_safety_net_poll(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1, env={"PGQUEUE_NOTIFY": "false"})
    settings = ClientSettings(dsn=pg_dsn, poll_max=0.05)
    with Client(settings=settings) as client:
        assert client.call("demo.echo", ["warm-up"], timeout=20).ok
        wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        result = client.call("demo.echo", ["no-notify"], timeout=20)
        assert result.ok, result
        assert result.value == {"args": ["no-notify"], "kwargs": {}}


@pytest.mark.parametrize("pooled", [False, True])
def test_a_call_that_gets_no_reply_times_out_after_a_last_look(pg_dsn: str, pooled: bool) -> None:
    # No worker: the caller must give up at its timeout, having polled at least once.
    settings = ClientSettings(dsn=pg_dsn, poll_max=0.2, pooled=pooled)
    with Client(settings=settings) as client:
        if not pooled:
            assert client.call("demo.echo", timeout=0.3).kind == "timeout"
            wait_until(lambda: _listening(client), 10, "the reply listener to be in place")
        result = client.call("demo.echo", timeout=0.5)
    assert result.kind == "timeout"
    assert "no reply within 0.5s" in result.error
    assert "(0 polls)" not in result.error


def _heard_all_sent_so_far(pg_dsn: str, client: Client) -> None:
    """A barrier: a listener reads its connection's notifications in commit order, so once a
    NOTIFY sent now has woken it, every one sent before (a warm-up call's on the shared channel,
    read late on a busy machine) has been counted."""
    listener = client.listener
    assert listener is not None
    key = f"barrier-{id(client)}"
    waiter = listener.register(key)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('pgqueue_reply', %s)", (key,))
        assert waiter.event.wait(10), "the barrier NOTIFY never reached the listener"
    finally:
        listener.unregister(key, waiter)


def test_a_reply_wakes_only_the_client_that_waits_for_it(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=2)
    with Client(pg_dsn) as caller, Client(pg_dsn) as bystander:
        for client in (caller, bystander):
            assert client.call("demo.echo", ["warm-up"], timeout=20).ok
            wait_until(lambda c=client: _listening(c), 10, "the reply listener to be in place")
        for client in (caller, bystander):
            _heard_all_sent_so_far(pg_dsn, client)
        assert caller.listener is not None and bystander.listener is not None
        before = bystander.listener.delivered, caller.listener.delivered
        for i in range(20):
            assert caller.call("demo.echo", [i], timeout=20).ok
        # Each reply was notified on the caller's own channel: the other process slept.
        assert caller.listener.delivered - before[1] == 20
        assert bystander.listener.delivered == before[0]
