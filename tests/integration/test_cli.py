"""The ``pgqueue`` command line as an operator uses it, and as it fails on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import runs
from tests.support.workers import WorkerFactory


def pgq(
    *args: str, dsn: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    if dsn:
        full_env["PGQUEUE_DSN"] = dsn
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["enqueue", "demo.echo", "--args", "[1,"], "--args"),
        (["enqueue", "demo.echo", "--args", '{"a": 1}'], "--args"),
        (["enqueue", "demo.echo", "--kwargs", "[1]"], "--kwargs"),
        (["enqueue", "demo.echo", "--queue", "bad queue;drop"], "--queue"),
        (["enqueue", "demo.echo", "--priority", "-1"], "--priority"),
        (["enqueue", "demo.echo", "--delay", "-3"], "--delay"),
        (["call", "demo.echo", "--timeout", "-5"], "--timeout"),
        (["worker", "--tasks", "pgqueue.demo_tasks", "--concurrency", "-2"], "--concurrency"),
        (["worker", "--tasks", "pgqueue.demo_tasks", "--lease", "abc"], "--lease"),
        (["worker", "--tasks", "pgqueue.demo_tasks", "--pool", "threads"], "--pool"),
        (["worker", "--tasks", "pgqueue.demo_tasks", "--queues", "ok,white space"], "--queues"),
        (["worker", "--tasks", "no.such.module"], "--tasks"),
        (["dlq", "replay", "x"], "dl_id"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(pg_dsn: str, args: list[str], option: str) -> None:
    done = pgq(*args, dsn=pg_dsn)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert option in lines[0]


def test_env_values_are_checked_and_named(pg_dsn: str) -> None:
    done = pgq(
        "worker", "--tasks", "pgqueue.demo_tasks", dsn=pg_dsn, env={"PGQUEUE_CONCURRENCY": "0"}
    )
    assert done.returncode == 2
    assert "PGQUEUE_CONCURRENCY" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_dsn_is_named() -> None:
    done = pgq("stats")
    assert done.returncode == 2
    assert "--dsn" in done.stderr and "PGQUEUE_DSN" in done.stderr


def test_unreachable_database_is_one_line_not_a_traceback() -> None:
    done = pgq("stats", "--dsn", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_call_enqueue_stats_dlq_sweep_round_trip(pg_dsn: str, workers: WorkerFactory) -> None:
    workers.start(pg_dsn, concurrency=1, extra=["--max-attempts", "1"])
    done = pgq("call", "demo.add", "--args", "[2, 3]", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ok": True,
        "value": 5,
        "error": "",
        "kind": "ok",
        "reply_key": json.loads(done.stdout)["reply_key"],
    }
    failed = pgq("call", "demo.fail", "--kwargs", '{"message": "nope"}', dsn=pg_dsn)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"] == "ValueError: nope"

    assert pgq("enqueue", "demo.fail", "--queue", "default", dsn=pg_dsn).returncode == 0
    from tests.support.workers import wait_until

    wait_until(
        lambda: runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.dead_letter") == 1,
        20,
        "dead letter",
    )
    stats = json.loads(pgq("stats", "--json", dsn=pg_dsn).stdout)
    assert stats == [
        {"queue": "default", "ready": 0, "in_flight": 0, "delayed": 0, "dead": 1, "oldest_age": 0.0,
         "paused": False}
    ]  # fmt: skip
    table = pgq("stats", dsn=pg_dsn).stdout
    assert "QUEUE" in table and "default" in table

    listed = json.loads(pgq("dlq", "list", "--json", dsn=pg_dsn).stdout)  # one JSON array
    assert len(listed) == 1 and listed[0]["reason"].startswith(
        "failed after 1 attempts: ValueError"
    )
    assert pgq("dlq", "purge", "--yes", dsn=pg_dsn).stdout.strip() == "purged 1 dead letters"
    assert pgq("dlq", "replay", "999", dsn=pg_dsn).returncode == 1

    runs.query(
        pg_dsn,
        "INSERT INTO pgqueue.result (reply_key, status, expires_at) VALUES "
        "('old', 'completed', now() - interval '1 second'), "
        "('fresh', 'completed', now() + interval '1 hour') "
        "RETURNING reply_key",
    )
    swept = pgq("sweep", "--batch-size", "1", dsn=pg_dsn)
    assert swept.returncode == 0, swept.stderr
    assert "swept 1 expired replies" in swept.stdout and "0 orphaned calls" in swept.stdout
    assert [r[0] for r in runs.query(pg_dsn, "SELECT reply_key FROM pgqueue.result")] == ["fresh"]


def test_help_texts_name_every_option_and_its_env_var() -> None:
    done = pgq("worker", "--help")
    assert done.returncode == 0
    for option, env in [
        ("--task-time-limit", "PGQUEUE_TASK_TIME_LIMIT"),
        ("--lease", "PGQUEUE_LEASE"),
    ]:
        assert option in done.stdout and env in done.stdout
    assert pgq("--help").returncode == 0
