"""``migrate --check`` / ``--sql``, the sweep's orphans, shell completion, and PGQUEUE_POOLED."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgqueue import migrating
from tests.integration.test_cli import pgq
from tests.integration.test_pgbouncer import bouncer_dsn  # noqa: F401 - the PgBouncer fixture
from tests.integration.test_schema import catalog
from tests.support import runs
from tests.support.postgres import PgServer


@pytest.fixture
def empty_dsn(pg_server: PgServer) -> Iterator[str]:
    """A database without the pgqueue schema."""
    name = f"pgqueue_empty_{os.getpid()}"
    pg_server.drop_database(name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_server.dsn_for(name)
    finally:
        pg_server.drop_database(name)


def test_migrate_check_names_what_is_pending_and_changes_nothing(empty_dsn: str) -> None:
    latest = migrating.known()[-1]
    done = pgq("migrate", "--check", dsn=empty_dsn)
    assert done.returncode == 1
    assert "schema is behind: version 0" in done.stdout and latest.label in done.stdout
    state = json.loads(pgq("migrate", "--check", "--json", dsn=empty_dsn).stdout)
    assert state["up_to_date"] is False and state["current"] == 0
    assert [p["version"] for p in state["pending"]] == [m.version for m in migrating.known()]
    with psycopg.connect(empty_dsn) as conn:  # --check created nothing
        assert conn.execute("SELECT to_regnamespace('pgqueue')").fetchone() == (None,)

    assert pgq("migrate", dsn=empty_dsn).returncode == 0
    done = pgq("migrate", "--check", dsn=empty_dsn)
    assert done.returncode == 0, done.stdout
    assert f"schema is up to date (version {latest.version})" in done.stdout


def test_migrate_sql_run_by_hand_equals_migrate_and_satisfies_check(
    empty_dsn: str, pg_dsn: str
) -> None:
    text = pgq("migrate", "--sql", dsn=empty_dsn)
    assert text.returncode == 0, text.stderr
    offline = pgq("migrate", "--sql", "--from", "0")  # no database needed
    assert offline.returncode == 0 and offline.stdout == text.stdout
    assert "\nBEGIN;" not in text.stdout and "COMMIT;" not in text.stdout  # the tool's transaction
    # What a team's migration tool does with the file: run it in one transaction.
    with psycopg.connect(empty_dsn) as conn, conn.transaction():
        conn.execute(text.stdout.encode())
    assert pgq("migrate", "--check", dsn=empty_dsn).returncode == 0
    assert catalog(empty_dsn) == catalog(pg_dsn)
    assert pgq("migrate", "--sql", dsn=empty_dsn).stdout.startswith(
        "-- pgqueue: the schema is up to date"
    )
    latest = migrating.known()[-1].version
    assert pgq("migrate", "--sql", "--from", str(latest)).stdout.startswith(
        "-- pgqueue: the schema is up to date"
    )


def test_migrate_from_without_sql_is_a_usage_error() -> None:
    done = pgq("migrate", "--from", "2")
    assert done.returncode == 2 and "--from" in done.stderr


def _call_message(dsn: str, queue: str, deadline: str, held: bool = False) -> int:
    vt = "now() + interval '1 hour'" if held else "now()"
    claimed = "'w1'" if held else "NULL"
    return int(
        runs.scalar(
            dsn,
            "INSERT INTO pgqueue.message (queue, task_name, payload, reply_key, deadline, vt, "
            f"claimed_by, read_ct) VALUES (%s, 'extract', '{{}}', gen_random_uuid()::text, "
            f"now() + %s::interval, {vt}, {claimed}, {1 if held else 0}) RETURNING msg_id",
            (queue, deadline),
        )
    )


def test_sweep_dead_letters_orphaned_calls_naming_queue_and_deadline(pg_dsn: str) -> None:
    orphan = _call_message(pg_dsn, "extarct", "-10 minutes")  # a typo nobody consumes
    recent = _call_message(pg_dsn, "extarct", "-1 minute")  # within the margin
    waiting = _call_message(pg_dsn, "default", "30 seconds")  # its caller still waits
    held = _call_message(pg_dsn, "default", "-10 minutes", held=True)  # a worker has it
    fire_and_forget = int(
        runs.scalar(
            pg_dsn,
            "INSERT INTO pgqueue.message (queue, task_name, payload, enqueued_at) VALUES "
            "('extarct', 'x', '{}', now() - interval '1 day') RETURNING msg_id",
        )
    )
    done = pgq("sweep", "--json", dsn=pg_dsn, env={"PGQUEUE_ORPHAN_MARGIN": "300"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["orphans_dead_lettered"] == 1
    left = {r[0] for r in runs.query(pg_dsn, "SELECT msg_id FROM pgqueue.message")}
    assert left == {recent, waiting, held, fire_and_forget}
    ((msg_id, queue, reason),) = runs.query(
        pg_dsn, "SELECT msg_id, queue, reason FROM pgqueue.dead_letter"
    )
    assert (msg_id, queue) == (orphan, "extarct")
    assert reason.startswith("orphaned: the caller's deadline 20")
    assert "no worker ever took it (queue 'extarct')" in reason

    # The lease of the held one lapses (its worker died): now it is an orphan too.
    runs.query(pg_dsn, "UPDATE pgqueue.message SET vt = now() WHERE msg_id = %s RETURNING 1",
               (held,))  # fmt: skip
    done = pgq("sweep", "--orphan-margin", "30", dsn=pg_dsn)
    assert done.returncode == 0, done.stderr
    assert "2 orphaned calls dead-lettered" in done.stdout  # held, and recent (margin 30 s)
    reasons = [r[0] for r in runs.query(pg_dsn, "SELECT reason FROM pgqueue.dead_letter")]
    assert any("its last worker (w1) let the lease lapse (queue 'default')" in r for r in reasons)


def test_bash_completion_sources_registers_and_completes() -> None:
    script = pgq("completion", "bash")
    assert script.returncode == 0, script.stderr
    probe = r"""
source /dev/stdin
complete -p pgqueue
COMP_WORDS=(pgqueue dlq ''); COMP_CWORD=2; _pgqueue; echo "dlq: ${COMPREPLY[*]}"
COMP_WORDS=(pgqueue queue purge --ten); COMP_CWORD=3; _pgqueue; echo "opt: ${COMPREPLY[*]}"
COMP_WORDS=(pgqueue queue purge orders --state ''); COMP_CWORD=5; _pgqueue
echo "state: ${COMPREPLY[*]}"
COMP_WORDS=(pgqueue --log-level DEBUG sw); COMP_CWORD=3; _pgqueue; echo "cmd: ${COMPREPLY[*]}"
COMP_WORDS=(pgqueue gate ''); COMP_CWORD=2; _pgqueue; echo "gate: ${COMPREPLY[*]}"
"""
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", probe],
        input=script.stdout, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -F _pgqueue pgqueue"
    assert "dlq: list replay purge" in lines
    assert "opt: --tenant" in lines
    assert "state: ready delayed all" in lines
    assert "cmd: sweep" in lines
    assert "gate: on off status" in lines


def test_zsh_completion_script_loads_in_zsh_and_registers() -> None:
    script = pgq("completion", "zsh")
    assert script.returncode == 0
    assert script.stdout.startswith("#compdef pgqueue\n")
    # A real zsh (installed by .ci/setup.d/10-python.sh) with compinit loads it without a word on
    # stderr, registers _pgqueue for pgqueue and holds the command tree and option choices.
    probe = r"""
autoload -U compinit; compinit -u -D
source /dev/stdin
print -r -- "comp=${_comps[pgqueue]}"
print -r -- "dlq=${_pgqueue_words[pgqueue dlq]}"
print -r -- "state=${_pgqueue_choices[pgqueue queue purge --state]}"
"""
    done = subprocess.run(
        ["zsh", "-f", "-c", probe],
        input=script.stdout, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        "comp=_pgqueue",
        "dlq=list replay purge",
        "state=ready delayed all",
    ]


def test_migrate_and_sweep_through_transaction_pooling(
    bouncer_dsn: str,  # noqa: F811 - the fixture imported above
    pg_dsn: str,
) -> None:
    """Behind PgBouncer in transaction mode a session's prepared statements are not its own:
    with PGQUEUE_POOLED the sweep repeats its statements (batch after batch) unprepared."""
    pooled = {"PGQUEUE_POOLED": "true"}
    done = pgq("migrate", "--check", dsn=bouncer_dsn, env=pooled)
    assert done.returncode == 0, done.stderr
    done = pgq("migrate", "--json", dsn=bouncer_dsn, env=pooled)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["applied"] == []
    runs.query(
        pg_dsn,
        "INSERT INTO pgqueue.result (reply_key, status, expires_at) "
        "SELECT 'k' || i, 'completed', now() - interval '1 second' "
        "FROM generate_series(1, 12) i RETURNING 1",
    )
    for _ in range(12):
        _call_message(pg_dsn, "nobody", "-1 hour")
    # Batches of one: each statement runs 13 times, past psycopg's prepare threshold (5).
    done = pgq("sweep", "--batch-size", "1", "--json", dsn=bouncer_dsn, env=pooled)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["results_deleted"] == 12 and report["orphans_dead_lettered"] == 12
    assert runs.scalar(pg_dsn, "SELECT count(*) FROM pgqueue.message") == 0
    # PgBouncer hands the server session it just released to the next client (LIFO): without
    # PGQUEUE_POOLED the sweep's prepared statements would be left in it for anyone to trip on.
    with psycopg.connect(bouncer_dsn, prepare_threshold=None) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '_pg3_%%'"
        ).fetchone()
    assert left == (0,)
