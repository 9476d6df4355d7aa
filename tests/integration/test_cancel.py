"""Cancellation with real workers (issue 19): a waiting message never runs, a running one is killed
with every process it spawned within lease/3 + 1 s, its caller gets ``cancelled`` at once, a
finished one is "already done", an unknown id is a clear error; an abandoned call with
cancel_on_timeout stops within the same bound after its deadline."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import AsyncClient, CallResult, Client, UnknownMessage, admin
from pgqueue.celery_adapter import CeleryDispatcher
from tests.support import cancel_tasks, runs
from tests.support.celery_redis import LegacyWorker
from tests.support.postgres import PgServer
from tests.support.workers import WorkerFactory, wait_until

TASKS = "tests.support.cancel_tasks"
LEASE = 6.0
BOUND = LEASE / 3 + 1.0  # how soon a cancelled run must be gone


@pytest.fixture
def probe(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(cancel_tasks.DDL)
    return pg_dsn


def events(dsn: str, tag: str) -> dict[str, tuple[Any, ...]]:
    rows = runs.query(
        dsn, "SELECT event, msg_id, pid, child_pid FROM cancel_probe WHERE tag = %s", (tag,)
    )
    return {row[0]: row[1:] for row in rows}


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed child its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or before the read
        return False
    return state not in {"Z", "X"}


def started(dsn: str, tag: str) -> tuple[int, int, int]:
    """Wait for the run to start: its msg_id, its pid and the pid of the child it spawned."""
    wait_until(lambda: "started" in events(dsn, tag), 60, f"run {tag} to start")
    msg_id, pid, child = events(dsn, tag)["started"]
    assert alive(pid) and alive(child)
    return msg_id, pid, child


def gone_within(pids: tuple[int, int], since: float) -> float:
    """Seconds from ``since`` until both processes were gone (fails after a generous wait)."""
    wait_until(lambda: not any(alive(p) for p in pids), 60, f"pids {pids} to be killed")
    return time.monotonic() - since


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def dead_letter_reason(dsn: str, msg_id: int) -> str:
    """The message's dead-letter reason, once it is written."""
    query = "SELECT reason FROM pgqueue.dead_letter WHERE msg_id = %s"
    wait_until(lambda: runs.scalar(dsn, query, (msg_id,)) is not None, 30, "the dead letter")
    return str(runs.scalar(dsn, query, (msg_id,)))


def test_a_waiting_message_is_cancelled_and_never_runs(probe: str, workers: WorkerFactory) -> None:
    with Client(probe) as client:
        submitted = client.submit("cancel.work", [probe, "waiting", 0.1])
        queued = client.enqueue("cancel.work", [probe, "waiting-ff", 0.1])
        done = client.cancel(submitted.msg_id)
        assert (done.outcome, done.state, done.msg_id) == ("cancelled", "waiting", submitted.msg_id)
        assert done.task == "cancel.work" and done.cancelled
        assert submitted.result(timeout=10).kind == "cancelled"
        assert client.cancel(queued).state == "waiting"
        assert dead_letter_reason(probe, queued).startswith("cancelled while waiting by pid ")
        # A worker starts and works through a later call: the cancelled ones never ran.
        workers.start(probe, tasks=TASKS, concurrency=2, extra=["--lease", str(LEASE)])
        assert client.call("cancel.echo", ["after"], timeout=60).value == "after"
    assert events(probe, "waiting") == {} and events(probe, "waiting-ff") == {}
    assert runs.scalar(probe, "SELECT count(*) FROM pgqueue.message") == 0


@pytest.mark.parametrize("told_by", ["notify", "renewal"])
def test_a_running_call_is_killed_with_its_children_and_its_caller_gets_cancelled(
    probe: str, workers: WorkerFactory, told_by: str
) -> None:
    # Behind a transaction pooler a worker cannot LISTEN: its lease renewal finds the cancel.
    pooled = ["--pooled"] if told_by == "renewal" else []
    worker = workers.start(
        probe, tasks=TASKS, concurrency=2, extra=["--lease", str(LEASE), *pooled]
    )
    with Client(probe) as client:
        call, result = in_thread(
            lambda: client.call("cancel.work", [probe, "running", 4.0], timeout=60)
        )
        msg_id, pid, child = started(probe, "running")
        began = time.monotonic()
        done = client.cancel(msg_id)
        assert (done.outcome, done.state) == ("cancelled", "running")
        call.join(10)
        answered = time.monotonic() - began
        took = gone_within((pid, child), began)
        reply: CallResult = result[0]
        assert reply.kind == "cancelled" and not reply.ok, reply
        assert reply.error.startswith("cancelled while running on "), reply
        assert answered < 2.0, answered  # at once, not at the call's 60 s timeout
        assert took <= BOUND, f"the run was killed after {took:.2f}s, over lease/3 + 1 s"
        # The run would have recorded its end 4 s after it started: it never does.
        wait_until(lambda: time.monotonic() > began + 5.0, 10, "the run's would-be end")
        assert set(events(probe, "running")) == {"started"}
        assert dead_letter_reason(probe, msg_id).startswith("cancelled while running on ")
        # The worker goes on, on a fresh slot.
        assert client.call("cancel.echo", ["next"], timeout=60).value == "next"
    assert f"msg_id={msg_id} task=cancel.work cancelled while running" in worker.log()
    assert "lease lost" not in worker.log() or told_by == "renewal"


def test_already_done_and_unknown_are_told_apart(probe: str, workers: WorkerFactory) -> None:
    workers.start(probe, tasks=TASKS, concurrency=1, extra=["--lease", str(LEASE)])
    with Client(probe) as client:
        finished = client.submit("cancel.echo", ["done"])
        assert finished.result(timeout=60).value == "done"
        done = finished.cancel()
        assert (done.outcome, done.state) == ("already_done", "finished"), done
        assert "already done (finished)" in str(done)
        # A reply stored and not taken yet: found by its reply key.
        stored = client.submit("cancel.echo", ["kept"])
        query = "SELECT count(*) FROM pgqueue.result WHERE reply_key = %s"
        wait_until(
            lambda: runs.scalar(probe, query, (stored.reply_key,)) == 1,
            60,
            "the reply to be stored",
        )
        by_key = client.cancel(stored.reply_key)
        assert (by_key.outcome, by_key.state) == ("already_done", "finished"), by_key
        assert "its reply is stored (completed)" in by_key.detail
        # Cancelled twice: the second is already done, and says it was cancelled.
        waiting = client.enqueue("cancel.echo", ["x"], queue="nobody")
        assert client.cancel(waiting).cancelled
        again = client.cancel(waiting)
        assert (again.outcome, again.state) == ("already_done", "cancelled"), again
        # Unknown: an error naming what was asked for.
        with pytest.raises(UnknownMessage, match=r"^msg_id 999999999: no message has this id"):
            client.cancel(999_999_999)
        with pytest.raises(UnknownMessage, match=r"^reply key no-such-key: no message and no"):
            client.cancel("no-such-key")


def test_cancel_on_timeout_stops_an_abandoned_call_after_its_deadline(
    probe: str, workers: WorkerFactory
) -> None:
    workers.start(probe, tasks=TASKS, concurrency=2, extra=["--lease", str(LEASE)])
    with Client(probe) as client:
        # Per call, on a task that does not ask for it; and per task (@task(cancel_on_timeout)).
        per_call = client.call(
            "cancel.work", [probe, "per-call", 5.0], timeout=3.0, cancel_on_timeout=True
        )
        deadline_passed = time.monotonic()
        assert per_call.kind == "timeout", per_call
        msg_id, pid, child = events(probe, "per-call")["started"]
        took = gone_within((pid, child), deadline_passed)
        assert took <= BOUND, f"killed {took:.2f}s after the caller's deadline"
        reason = dead_letter_reason(probe, msg_id)
        assert reason.startswith("cancelled at its caller's deadline (cancel_on_timeout)"), reason

        per_task = cancel_tasks.work_or_stop.using(client, timeout=3.0).call(probe, "per-task", 5.0)
        deadline_passed = time.monotonic()
        assert per_task.kind == "timeout", per_task
        msg_id, pid, child = events(probe, "per-task")["started"]
        assert gone_within((pid, child), deadline_passed) <= BOUND
        # The default: a call its caller gave up on runs to completion.
        default = client.call("cancel.work", [probe, "default", 3.0], timeout=1.5)
        assert default.kind == "timeout", default
        wait_until(lambda: "finished" in events(probe, "default"), 60, "the default run's end")
        wait_until(lambda: time.monotonic() > deadline_passed + 3.0, 10, "the would-be ends")
    assert set(events(probe, "per-call")) == {"started"}
    assert set(events(probe, "per-task")) == {"started"}


def test_inline_pool_withholds_the_reply_and_the_task_runs_to_its_end(
    probe: str, workers: WorkerFactory
) -> None:
    worker = workers.start(
        probe, tasks=TASKS, extra=["--pool", "inline", "--lease", "12", "--task-time-limit", "30"]
    )
    with Client(probe) as client:
        submitted = client.submit("cancel.work", [probe, "inline", 1.5])
        msg_id, _, _ = started(probe, "inline")
        done = submitted.cancel()
        assert (done.outcome, done.state) == ("cancelled", "running")
        # A thread cannot be killed: the task runs to its end, and its reply is withheld.
        wait_until(lambda: "finished" in events(probe, "inline"), 60, "the inline run's end")
        assert client.call("cancel.echo", ["next"], timeout=60).value == "next"
        assert submitted.result(timeout=5).kind == "cancelled"
    assert f"msg_id={msg_id} task=cancel.work cancelled after it ran" in worker.log()


@pytest.mark.asyncio
async def test_async_caller_gets_cancelled_at_once(probe: str) -> None:
    async with AsyncClient(probe) as client:
        call = asyncio.create_task(client.call("cancel.echo", ["a"], queue="nobody", timeout=60))

        def queued() -> Any:
            return runs.scalar(probe, "SELECT msg_id FROM pgqueue.message")

        await asyncio.to_thread(wait_until, lambda: queued() is not None, 30, "the message")
        msg_id = queued()
        began = time.monotonic()
        done = await client.cancel(msg_id)
        assert (done.outcome, done.state) == ("cancelled", "waiting")
        result = await asyncio.wait_for(call, 10)
        assert result.kind == "cancelled", result
        assert time.monotonic() - began < 2.0
        with pytest.raises(UnknownMessage):
            await client.cancel(10**15)


def pgq(dsn: str, *args: str, verb: str = "cancel") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", verb, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_the_cli_cancels_and_says_what_happened(probe: str, workers: WorkerFactory) -> None:
    with Client(probe) as client:
        waiting = client.enqueue("cancel.echo", ["x"], queue="nobody")
        done = pgq(probe, str(waiting))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            f"msg_id {waiting} (cancel.echo on queue nobody) cancelled while waiting: "
            "it will never run"
        )
        assert dead_letter_reason(probe, waiting).startswith("cancelled while waiting by cli ")
        again = pgq(probe, str(waiting), "--json")
        assert again.returncode == 0, again.stderr
        answer = json.loads(again.stdout)
        assert (answer["outcome"], answer["state"], answer["msg_id"]) == (
            "already_done",
            "cancelled",
            waiting,
        )
        # Running, named by its reply key.
        workers.start(probe, tasks=TASKS, concurrency=1, extra=["--lease", str(LEASE)])
        submitted = client.submit("cancel.work", [probe, "cli", 4.0])
        _, pid, child = started(probe, "cli")
        began = time.monotonic()
        running = pgq(probe, submitted.reply_key, "--by", "on-call ann")
        assert running.returncode == 0, running.stderr
        assert "cancelled while running on " in running.stdout, running.stdout
        assert gone_within((pid, child), began) <= BOUND + 1.0  # + the CLI's own start-up
        assert submitted.result(timeout=10).error.endswith(" by on-call ann")
        # pgqueue call --cancel-on-timeout: the run stops when the call gives up.
        args = json.dumps([probe, "cli-cot", 4.0])
        flags = ["--args", args, "--timeout", "2", "--cancel-on-timeout"]
        gave_up = pgq(probe, "cancel.work", *flags, verb="call")
        assert gave_up.returncode == 1 and json.loads(gave_up.stdout)["kind"] == "timeout"
        msg_id, pid, child = events(probe, "cli-cot")["started"]
        gone_within((pid, child), time.monotonic())
        assert dead_letter_reason(probe, msg_id).startswith("cancelled at its caller's deadline")
    unknown = pgq(probe, "999999999")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(
        "pgqueue: error: cancel: msg_id 999999999: no message has this id (the last id issued is "
    ), unknown.stderr
    bad = pgq(probe, "not a key!")
    assert bad.returncode == 2
    assert "ID: not a msg_id or a reply key" in bad.stderr, bad.stderr


def test_the_celery_route_reads_a_revoked_task_as_cancelled(legacy_worker: LegacyWorker) -> None:
    # Revoked before it is sent (Celery keeps revoked ids in its workers' memory), so the worker
    # skips it when it arrives and stores the REVOKED state: the adapter's mapping, on real Celery.
    task_id = uuid.uuid4().hex
    told = legacy_worker.app.control.revoke(
        task_id, reply=True, timeout=10, destination=[legacy_worker.hostname]
    )
    assert told, "the Celery worker did not acknowledge the revoke"
    celery = CeleryDispatcher(legacy_worker.app, send_options={"task_id": task_id})
    result = celery.call("gate.add", [1, 2], timeout=30)
    assert (result.kind, result.reply_key) == ("cancelled", task_id), result
    assert result.error.startswith("TaskRevokedError"), result


def test_dlq_list_shows_the_cancelled_messages(probe: str) -> None:
    with Client(probe) as client:
        cancelled = client.enqueue("cancel.echo", ["x"], queue="nobody")
        purged = client.enqueue("cancel.echo", ["y"], queue="other")
        client.cancel(cancelled)
    admin.purge_queue(probe, "other")
    assert {d.msg_id for d in admin.dead_letters(probe)} == {cancelled, purged}
    assert [d.msg_id for d in admin.dead_letters(probe, reason_prefix="cancelled")] == [cancelled]
    assert admin.dead_letters(probe, reason_prefix="cancelled_%") == []  # literal, not LIKE
    listed = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "dlq", "list", "--reason", "cancelled", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PGQUEUE_DSN": probe},
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["msg_id"] for r in rows] == [cancelled]
    assert rows[0]["reason"].startswith("cancelled while waiting")


def test_a_role_that_cannot_read_the_id_sequence_still_tells_finished_from_unknown(
    pg_server: PgServer, pg_dsn: str
) -> None:
    # An identity column needs no grant on its sequence to insert: an application role may well
    # have none. The cancel then bounds the ids issued by the highest one still on record.
    role = f"app_{secrets.token_hex(4)}"
    dbname = str(psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"])
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(dbname), sql.Identifier(role)
            )
        )
    grants = [
        "GRANT USAGE ON SCHEMA pgqueue TO {}",
        "GRANT SELECT, INSERT, DELETE ON pgqueue.message TO {}",
        "GRANT SELECT, INSERT ON pgqueue.dead_letter, pgqueue.result TO {}",
        "GRANT SELECT ON pgqueue.reply_secret TO {}",
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for grant in grants:
            conn.execute(sql.SQL(grant).format(sql.Identifier(role)))
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    info["user"] = role
    info.pop("password", None)
    app_dsn = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    try:
        with Client(pg_dsn) as owner:
            finished = owner.enqueue("cancel.echo", ["a"], queue="nobody")
            waiting = owner.enqueue("cancel.echo", ["b"], queue="nobody")
        runs.query(pg_dsn, "DELETE FROM pgqueue.message WHERE msg_id = %s RETURNING 1", (finished,))
        with Client(app_dsn) as app:
            done = app.cancel(finished)
            assert (done.outcome, done.state) == ("already_done", "finished"), done
            assert app.cancel(waiting).cancelled
            with pytest.raises(UnknownMessage, match=rf"^msg_id {waiting + 1}: no message has"):
                app.cancel(waiting + 1)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [role],
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                    sql.Identifier(dbname), sql.Identifier(role)
                )
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
