"""Unique jobs (issue 18): one message per unique key while it waits or runs (and for a window
after its enqueue), enforced by Postgres; a second enqueue returns the first one's id, and a
call with the key attaches to the first one's reply instead of running the task twice."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from pgqueue import CallResult, Client, ClientSettings, ConfigurationError, EnqueueError
from tests.support.workers import WorkerFactory, wait_until


def _keys(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT unique_key, count(*) FROM pgqueue.message GROUP BY unique_key"
        ).fetchall()
    return {str(k): int(n) for k, n in rows}


def _holds(dsn: str, *, expired: bool) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT unique_key FROM pgqueue.unique_hold WHERE (expires_at <= now()) = %s "
            "OR NOT %s ORDER BY 1",
            (expired, expired),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_sixteen_threads_enqueueing_ten_keys_leave_exactly_ten_messages(pg_dsn: str) -> None:
    threads, per_thread, keys = 16, 100, 10
    with Client(pg_dsn, ClientSettings(pool_size=threads)) as client:
        start = threading.Barrier(threads)

        def hammer(n: int) -> list[tuple[str, int]]:
            start.wait(timeout=60)
            out = []
            for i in range(per_thread):
                key = f"report-{(n + i) % keys}"
                out.append((key, client.enqueue("demo.noop", unique_key=key)))
            return out

        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(hammer, n) for n in range(threads)]
            # A deadlock would leave a future unfinished: the timeout fails the test instead.
            results = [f.result(timeout=240) for f in futures]
    assert _keys(pg_dsn) == {f"report-{k}": 1 for k in range(keys)}
    ids: dict[str, set[int]] = {}
    for key, msg_id in (pair for result in results for pair in result):
        ids.setdefault(key, set()).add(msg_id)
    # Every enqueue of a key returned the one message's id.
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len(ids) == keys


def test_a_settled_message_frees_its_key(pg_dsn: str, workers: WorkerFactory) -> None:
    with Client(pg_dsn) as client:
        first = client.enqueue("demo.noop", unique_key="nightly")
        assert client.enqueue("demo.noop", unique_key="nightly") == first
        workers.start(pg_dsn, concurrency=1)
        wait_until(lambda: _keys(pg_dsn) == {}, 60, "the first message to be done")
        # A new message (the worker may already be running it).
        assert client.enqueue("demo.noop", unique_key="nightly") > first


def test_unique_for_holds_the_key_after_the_message_settled(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    with Client(pg_dsn) as client:
        first = client.enqueue("demo.noop", unique_key="hourly", unique_for=3600)
        workers.start(pg_dsn, concurrency=1)
        wait_until(lambda: _keys(pg_dsn) == {}, 60, "the first message to be done")
        # Settled, but inside its window: no second message.
        assert client.enqueue("demo.noop", unique_key="hourly", unique_for=3600) == first
        assert _keys(pg_dsn) == {}
        # Expired holds are cleared by later unique enqueues, a few at a time.
        client.enqueue("demo.noop", unique_key="stale", unique_for=0.1)
        wait_until(lambda: _holds(pg_dsn, expired=True) == ["stale"], 30, "the hold to expire")
        client.enqueue("demo.noop", unique_key="fresh", unique_for=60)
        assert "stale" not in _holds(pg_dsn, expired=False)
        # A short window runs out: then the key is free again.
        short = client.enqueue("demo.noop", unique_key="brief", unique_for=0.5)
        wait_until(
            lambda: client.enqueue("demo.noop", unique_key="brief", unique_for=0.5) != short,
            60,
            "the 0.5 s window to run out",
            interval=0.1,
        )


def test_calls_with_a_unique_key_attach_to_the_first_ones_reply(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    # A safety-net poll this rare: the callers can only be on time if the reply's NOTIFY woke
    # each of them (two wait on the same key in one process).
    settings = ClientSettings(poll_max=120.0)
    with Client(pg_dsn, settings) as client, Client(pg_dsn, settings) as other:
        first = client.submit("demo.echo", ["once"], unique_key="job-42")
        again = other.submit("demo.echo", ["twice"], unique_key="job-42")
        assert (again.msg_id, again.reply_key) == (first.msg_id, first.reply_key)
        assert (first.created, again.created) == (True, False)
        assert _keys(pg_dsn) == {"job-42": 1}
        results: list[CallResult] = []

        def call(c: Client) -> None:
            results.append(c.call("demo.echo", ["thrice"], unique_key="job-42", timeout=170))

        callers = [threading.Thread(target=call, args=(c,)) for c in (client, other, client)]
        for t in callers:
            t.start()
        wait_until(
            lambda: all(c.listener and c.listener.live for c in (client, other)),
            30,
            "both reply listeners to be in place",
        )
        workers.start(pg_dsn, concurrency=2)
        started = time.monotonic()
        for t in callers:
            t.join(timeout=180)
        assert time.monotonic() - started < 60, "a caller waited for its safety-net poll"
        expected = {"args": ["once"], "kwargs": {}}
        assert [r.value for r in results] == [expected] * 3, results
        assert {r.reply_key for r in results} == {first.reply_key}
        # Every attached caller, here or elsewhere, reads the same reply.
        assert first.result(30).value == expected
        assert other.result(again.reply_key, 30).value == expected


def test_a_key_held_by_a_fire_and_forget_message_has_no_reply_to_attach_to(pg_dsn: str) -> None:
    with Client(pg_dsn) as client:
        msg_id = client.enqueue("demo.noop", unique_key="ff")
        result = client.call("demo.noop", unique_key="ff", timeout=5)
        assert result.kind == "enqueue_error" and str(msg_id) in result.error, result
        with pytest.raises(EnqueueError, match="no reply to attach to"):
            client.submit("demo.noop", unique_key="ff")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"unique_key": ""}, "unique_key"),
        ({"unique_key": "x" * 256}, "unique_key"),
        ({"unique_key": 7}, "unique_key"),
        ({"unique_for": 5}, "unique_for"),
        ({"unique_key": "k", "unique_for": -1}, "unique_for"),
    ],
)
def test_bad_unique_arguments_name_the_field(
    pg_dsn: str, kwargs: dict[str, object], field: str
) -> None:
    with Client(pg_dsn) as client:
        with pytest.raises(ConfigurationError) as raised:
            client.enqueue("demo.noop", **kwargs)  # type: ignore[arg-type]
        assert raised.value.field == field
        assert client.call("demo.noop", **kwargs).kind == "enqueue_error"  # type: ignore[arg-type]
