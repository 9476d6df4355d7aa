"""``pgqueue queue list|show|purge``, ``dlq purge`` confirmation and ``--json`` on every command."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from pgqueue import Client
from pgqueue.replies import CallResult
from tests.integration.test_cli import pgq
from tests.support import runs
from tests.support.workers import WorkerFactory, wait_until


def _enqueue(dsn: str, task: str, *extra: str) -> int:
    done = pgq("enqueue", task, "--queue", "orders", "--json", *extra, dsn=dsn)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["msg_id"])


def test_queue_show_pages_by_keyset_and_filters_by_task_tenant_and_state(pg_dsn: str) -> None:
    ids = [_enqueue(pg_dsn, "a", "--tenant", f"t{i % 2}") for i in range(5)]
    later = _enqueue(pg_dsn, "b", "--delay", "3600")

    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        done = pgq("queue", "show", "orders", "--limit", "2", "--after", str(after), "--json",
                   dsn=pg_dsn)  # fmt: skip
        assert done.returncode == 0, done.stderr
        page = json.loads(done.stdout)
        pages += 1
        seen += [m["msg_id"] for m in page["messages"]]
        assert len(page["messages"]) <= 2
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [*ids, later]
    assert pages == 3

    def show(*args: str) -> list[dict[str, object]]:
        done = pgq("queue", "show", "orders", "--json", *args, dsn=pg_dsn)
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout)["messages"])

    assert [m["msg_id"] for m in show("--tenant", "t1")] == [ids[1], ids[3]]
    assert [m["msg_id"] for m in show("--task", "b")] == [later]
    delayed = show("--state", "delayed")
    assert [(m["msg_id"], m["state"]) for m in delayed] == [(later, "delayed")]
    assert float(str(delayed[0]["visible_in"])) > 3000
    assert len(show("--state", "ready")) == 5
    assert show("--state", "in_flight") == []
    first = show("--limit", "1")[0]
    assert first["payload"] == {"args": [], "kwargs": {}} or "args" in str(first["payload"])

    table = pgq("queue", "show", "orders", "--limit", "2", dsn=pg_dsn)
    assert table.returncode == 0
    assert "MSG_ID" in table.stdout and f"next page: --after {ids[1]}" in table.stdout

    listed = json.loads(pgq("queue", "list", "--json", dsn=pg_dsn).stdout)
    assert listed == [
        {"queue": "orders", "ready": 5, "in_flight": 0, "delayed": 1, "dead": 0,
         "oldest_age": listed[0]["oldest_age"], "paused": False}
    ]  # fmt: skip


def test_queue_show_pages_cost_the_same_at_any_depth(pg_dsn: str) -> None:
    runs.query(
        pg_dsn,
        "INSERT INTO pgqueue.message (queue, task_name, payload) "
        "SELECT 'big', 'x', '{}' FROM generate_series(1, 20000) RETURNING 1",
    )
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ANALYZE pgqueue.message")
        conn.execute("SELECT pg_stat_statements_reset()")
    table_blocks = runs.scalar(pg_dsn, "SELECT pg_relation_size('pgqueue.message') / 8192")
    done = pgq("queue", "show", "big", "--limit", "10", "--after", "15000", "--json", dsn=pg_dsn)
    page = json.loads(done.stdout)
    assert [m["msg_id"] for m in page["messages"]] == list(range(15001, 15011))
    assert page["next_after"] == 15010
    ((rows, blocks),) = runs.query(
        pg_dsn,
        "SELECT rows, shared_blks_hit + shared_blks_read FROM pg_stat_statements "
        "WHERE query LIKE '%%visible_in%%'",
    )
    assert rows == 11  # the page and one more, to know there is a next page
    # A walk of the index from the cursor, not a scan (or count) of the queue: measured 7
    # blocks of the ~170 the table has.
    assert blocks < table_blocks / 10, (blocks, table_blocks)


def test_queue_purge_dead_letters_waiting_messages_and_answers_their_callers(
    pg_dsn: str,
) -> None:
    keep = _enqueue(pg_dsn, "a")  # another task: the --task filter keeps it
    gone = [_enqueue(pg_dsn, "b", "--tenant", "acme") for _ in range(3)]
    results: list[CallResult] = []
    with Client(pg_dsn) as client:
        # A call on a queue nobody consumes: without the purge it would wait all 60 s.
        caller = threading.Thread(
            target=lambda: results.append(client.call("b", queue="orders", timeout=60))
        )
        started = time.monotonic()
        caller.start()
        wait_until(
            lambda: (
                runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message WHERE task_name = 'b'")
                == 4
            ),
            20,
            "the call's message",
        )
        done = pgq("queue", "purge", "orders", "--task", "b", "--yes", "--json", dsn=pg_dsn)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"queue": "orders", "purged": 4, "callers_told": 1}
        caller.join(30)
    assert not caller.is_alive()
    assert time.monotonic() - started < 30
    (result,) = results
    assert not result.ok and "purged from queue 'orders'" in result.error

    assert [r[0] for r in runs.query(pg_dsn, "SELECT msg_id FROM pgqueue.message")] == [keep]
    letters = runs.query(pg_dsn, "SELECT msg_id, reason FROM pgqueue.dead_letter ORDER BY msg_id")
    assert [m for m, _ in letters][:3] == gone
    assert all(r.startswith("purged from queue 'orders' by cli ") for _, r in letters)

    # Undo one: it is a dead letter like any other.
    dl_id = runs.scalar(pg_dsn, "SELECT min(dl_id) FROM pgqueue.dead_letter")
    replay = pgq("dlq", "replay", str(dl_id), "--json", dsn=pg_dsn)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["dl_id"] == dl_id


def test_queue_purge_leaves_held_messages_and_delayed_ones_unless_asked(
    pg_dsn: str,
) -> None:
    ready = _enqueue(pg_dsn, "a")
    delayed = _enqueue(pg_dsn, "a", "--delay", "3600")
    held = _enqueue(pg_dsn, "a")
    runs.query(
        pg_dsn,
        "UPDATE pgqueue.message SET vt = now() + interval '1 hour', claimed_by = 'w1', "
        "read_ct = 1 WHERE msg_id = %s RETURNING 1",
        (held,),
    )
    done = pgq("queue", "purge", "orders", "--state", "ready", "--yes", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert "purged 1 messages" in done.stdout
    left = {r[0] for r in runs.query(pg_dsn, "SELECT msg_id FROM pgqueue.message")}
    assert left == {delayed, held}
    assert ready not in left
    pgq("queue", "purge", "orders", "--yes", dsn=pg_dsn)
    assert {r[0] for r in runs.query(pg_dsn, "SELECT msg_id FROM pgqueue.message")} == {held}


@pytest.mark.parametrize(
    "argv",
    [["dlq", "purge"], ["queue", "purge", "orders"]],
    ids=["dlq-purge", "queue-purge"],
)
def test_destructive_commands_refuse_without_a_terminal_or_yes(
    pg_dsn: str, argv: list[str]
) -> None:
    _enqueue(pg_dsn, "a")
    runs.query(
        pg_dsn,
        "INSERT INTO pgqueue.dead_letter (msg_id, queue, task_name, payload, priority, tenant, "
        "enqueued_at, read_ct, reason) VALUES (1, 'orders', 'a', '{}', 5, '', now(), 1, 'x') "
        "RETURNING 1",
    )
    done = pgq(*argv, dsn=pg_dsn, env={"PGQUEUE_YES": "true"})  # never from the environment
    assert done.returncode == 3
    assert "--yes" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 1
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1


def _read_until(fd: int, marker: bytes | None, seen: bytes, timeout: float = 60) -> bytes:
    """Read the terminal until ``marker`` shows (None: until the child closes it)."""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"nothing more on the terminal within {timeout}s: {seen!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            assert marker is None, f"the terminal closed before {marker!r}: {seen!r}"
            return seen
        seen += chunk
    return seen


def _on_a_terminal(dsn: str, argv: list[str], answer: str) -> tuple[int, str]:
    """Run pgqueue with stdin, stdout and stderr on a pseudo-terminal; type ``answer``."""
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DSN"] = dsn
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", *argv],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True,
    )  # fmt: skip
    os.close(secondary)
    seen = _read_until(primary, b"[y/N]", b"")
    os.write(primary, answer.encode() + b"\n")
    seen = _read_until(primary, None, seen)
    code = proc.wait(60)
    os.close(primary)
    return code, seen.decode(errors="replace")


def test_destructive_commands_ask_on_a_terminal(pg_dsn: str) -> None:
    runs.query(
        pg_dsn,
        "INSERT INTO pgqueue.dead_letter (msg_id, queue, task_name, payload, priority, tenant, "
        "enqueued_at, read_ct, reason) VALUES (1, 'orders', 'a', '{}', 5, '', now(), 1, 'x') "
        "RETURNING 1",
    )
    code, out = _on_a_terminal(pg_dsn, ["dlq", "purge"], "n")
    assert code == 3, out
    assert "Delete the dead letters of every queue for good?" in out
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1
    code, out = _on_a_terminal(pg_dsn, ["dlq", "purge"], "y")
    assert code == 0, out
    assert "purged 1 dead letters" in out
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 0


def test_every_command_prints_one_json_document(pg_dsn: str, workers: WorkerFactory) -> None:
    workers.start(pg_dsn, concurrency=1, extra=["--max-attempts", "1"])
    outputs = {
        "migrate": pgq("migrate", "--json", dsn=pg_dsn),
        "migrate --check": pgq("migrate", "--check", "--json", dsn=pg_dsn),
        "migrate --sql": pgq("migrate", "--sql", "--json", dsn=pg_dsn),
        "enqueue": pgq("enqueue", "demo.fail", "--json", dsn=pg_dsn),
        "call": pgq("call", "demo.add", "--args", "[1, 2]", "--json", dsn=pg_dsn),
    }
    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1,
        30,
        "the dead letter",
    )
    dl_id = runs.scalar(pg_dsn, "SELECT dl_id FROM pgqueue.dead_letter")
    outputs |= {
        "stats": pgq("stats", "--json", dsn=pg_dsn),
        "queue list": pgq("queue", "list", "--json", dsn=pg_dsn),
        "queue show": pgq("queue", "show", "default", "--json", dsn=pg_dsn),
        "queue pause": pgq("queue", "pause", "default", "--json", dsn=pg_dsn),
        "queue resume": pgq("queue", "resume", "default", "--json", dsn=pg_dsn),
        "dlq list": pgq("dlq", "list", "--json", dsn=pg_dsn),
        "dlq replay": pgq("dlq", "replay", str(dl_id), "--json", dsn=pg_dsn),
        "queue purge": pgq("queue", "purge", "default", "--yes", "--json", dsn=pg_dsn),
        "dlq purge": pgq("dlq", "purge", "--yes", "--json", dsn=pg_dsn),
        "sweep": pgq("sweep", "--json", dsn=pg_dsn),
        "gate": pgq("gate", "status", "--json", dsn=pg_dsn),
    }
    documents = {}
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stderr)
        documents[name] = json.loads(done.stdout)  # one document: json.loads takes no more
    assert documents["migrate"]["applied"] == []
    assert documents["migrate --check"]["up_to_date"] is True
    assert documents["migrate --sql"]["pending"] == []
    assert isinstance(documents["enqueue"]["msg_id"], int)
    assert documents["call"]["value"] == 3
    assert documents["dlq list"][0]["dl_id"] == dl_id
    assert documents["sweep"] == {
        "results_deleted": 0, "dead_letters_deleted": 0, "orphans_dead_lettered": 0
    }  # fmt: skip
    assert set(documents["queue show"]) == {"queue", "paused", "messages", "next_after"}
    assert documents["queue pause"]["paused"] is True
    assert documents["queue resume"]["changed"] is True


def test_worker_json_logs_are_json_lines(pg_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env["PGQUEUE_DSN"] = pg_dsn
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", "worker", "--tasks", "pgqueue.demo_tasks",
         "--metrics-port", "0", "--json"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    proc.terminate()
    proc.wait(60)
    proc.stderr.close()
    entry = json.loads(line)
    assert {"ts", "level", "logger", "message"} <= set(entry)


def test_queue_purge_on_a_terminal_says_how_many(pg_dsn: str) -> None:
    for _ in range(3):
        _enqueue(pg_dsn, "a", "--tenant", "acme")
    _enqueue(pg_dsn, "a", "--tenant", "other")
    code, out = _on_a_terminal(pg_dsn, ["queue", "purge", "orders", "--tenant", "acme"], "no")
    assert code == 3, out
    assert (
        "Move the 3 waiting (ready and delayed) messages of queue 'orders' (tenant 'acme') "
        "to the dead-letter table? [y/N]" in " ".join(out.split())
    )
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 4
    code, out = _on_a_terminal(pg_dsn, ["queue", "purge", "orders", "--tenant", "acme"], "yes")
    assert code == 0, out
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 1


def test_queue_show_and_purge_take_the_database_from_dsn_as_every_command_does(
    pg_dsn: str,
) -> None:
    """``--dsn`` alone, no PGQUEUE_DSN in the environment (both once lacked the option)."""
    msg_id = _enqueue(pg_dsn, "a")
    shown = pgq("queue", "show", "orders", "--json", "--dsn", pg_dsn)
    assert shown.returncode == 0, shown.stderr
    assert [m["msg_id"] for m in json.loads(shown.stdout)["messages"]] == [msg_id]
    purged = pgq("queue", "purge", "orders", "--yes", "--json", "--dsn", pg_dsn)
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["purged"] == 1
