"""Callers that poll for their replies (reply_wait=poll) time their polls from their recent
replies (architecture §4, pgqueue.replypacing): fewer polls, every reply still to its caller,
seen within poll_max, and the deadline kept."""

from __future__ import annotations

import asyncio
import threading
import time

from pgqueue import AsyncClient, Client
from pgqueue.client import CALL_MARGIN
from pgqueue.settings import ClientSettings
from tests.support import statements
from tests.support.workers import WorkerFactory

# A caller reading its reply row (take_reply, the delete of one key).
TAKE_REPLY = ("DELETE FROM pgqueue.result%", "%r.reply_key = $%")


def test_polling_callers_sharing_clients_get_every_reply_to_their_own_caller(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    # Two clients, four threads each, two tasks of different durations: each (queue, task)
    # keeps its own record, shared by the threads of a client.
    workers.start(pg_dsn, concurrency=4)
    settings = ClientSettings(dsn=pg_dsn, reply_wait="poll")
    wrong: list[str] = []
    done = [0]
    lock = threading.Lock()

    def caller(client: Client, name: str) -> None:
        for i in range(12):
            token = f"{name}-{i}"
            if i % 3 == 0:
                result = client.call("demo.sleep", [0.02], timeout=30)
                good = result.ok and result.value == 0.02
            else:
                result = client.call("demo.echo", [token], timeout=30)
                good = result.ok and result.value == {"args": [token], "kwargs": {}}
            with lock:
                done[0] += 1
                if not good:
                    wrong.append(f"{token}: {result}")

    with Client(settings=settings) as one, Client(settings=settings) as two:
        threads = [
            threading.Thread(target=caller, args=(client, f"{label}{t}"))
            for label, client in (("a", one), ("b", two))
            for t in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert one.listener is None and two.listener is None
    assert not wrong, wrong
    assert done[0] == 8 * 12


def test_a_polling_caller_reads_its_reply_row_a_few_times_a_call_not_a_dozen(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    # A 0.1 s task: the fixed schedule polls 6 times in the first 6 ms, then doubles, ~13 polls
    # a call; timed from the last replies, the first poll comes at ~75 ms, 3-4 polls a call.
    workers.start(pg_dsn, concurrency=1)
    reads = {}
    for adaptive in (True, False):
        settings = ClientSettings(dsn=pg_dsn, reply_wait="poll", poll_adaptive=adaptive)
        with Client(settings=settings) as client:
            for _ in range(3):
                assert client.call("demo.sleep", [0.1], timeout=30).ok
            statements.reset(pg_dsn)
            for _ in range(10):
                result = client.call("demo.sleep", [0.1], timeout=30)
                assert result.ok, result
            reads[adaptive] = statements.calls(pg_dsn, *TAKE_REPLY) / 10
    assert reads[True] <= 6, reads
    assert reads[False] >= 10, reads


def test_a_reply_faster_than_the_record_is_seen_within_poll_max(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    # The record says 0.6 s (its first poll would wait 0.45 s); the task now answers at once:
    # the first poll is capped at poll_max.
    workers.start(pg_dsn, concurrency=1)
    settings = ClientSettings(dsn=pg_dsn, reply_wait="poll", poll_max=0.05)
    with Client(settings=settings) as client:
        for _ in range(3):
            assert client.call("demo.sleep", [0.6], timeout=30).ok
        started = time.monotonic()
        assert client.call("demo.sleep", [0], timeout=30).ok
        took = time.monotonic() - started
    # An uncapped first wait alone is 0.45 s; everything under it is the cap at work, with
    # room for a busy machine's round trips.
    assert took < 0.42, took


def test_a_polling_caller_with_a_record_still_returns_by_its_deadline(
    pg_dsn: str, workers: WorkerFactory
) -> None:
    workers.start(pg_dsn, concurrency=1)
    settings = ClientSettings(dsn=pg_dsn, reply_wait="poll")
    with Client(settings=settings) as client:
        for _ in range(3):
            assert client.call("demo.sleep", [0.15], timeout=30).ok
        started = time.monotonic()
        result = client.call("demo.sleep", [3], timeout=0.3)
        took = time.monotonic() - started
    assert result.kind == "timeout", result
    assert "(0 polls)" not in result.error
    assert took <= 0.3 + CALL_MARGIN, took


def test_a_polling_async_client_times_its_polls_too(pg_dsn: str, workers: WorkerFactory) -> None:
    workers.start(pg_dsn, concurrency=1)

    async def calls() -> float:
        settings = ClientSettings(dsn=pg_dsn, reply_wait="poll")
        async with AsyncClient(settings=settings) as client:
            for _ in range(3):
                assert (await client.call("demo.sleep", [0.1], timeout=30)).ok
            statements.reset(pg_dsn)
            for _ in range(6):
                result = await client.call("demo.sleep", [0.1], timeout=30)
                assert result.ok, result
            assert client.listener is None
            return statements.calls(pg_dsn, *TAKE_REPLY) / 6

    assert asyncio.run(calls()) <= 6
