"""The gate under real conditions: real Celery + Redis as the legacy route, real Postgres, flips
under load, a database outage, the kill-switch (issue 3's acceptance points)."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from prometheus_client import REGISTRY

from pgqueue import Client, admin
from pgqueue.celery_adapter import CeleryDispatcher
from pgqueue.embedded import EmbeddedPostgres, free_port
from pgqueue.gating import Gate
from pgqueue.migrating import migrate
from pgqueue.routing import RoutingDispatcher
from tests.support import runs
from tests.support.celery_redis import LegacyWorker, close_app
from tests.support.legacy_tasks import make_app
from tests.support.workers import WorkerFactory, wait_until

TASKS = "tests.support.gate_tasks"


@dataclass
class Routes:
    dsn: str
    client: Client
    celery: CeleryDispatcher
    gate: Gate
    router: RoutingDispatcher


@pytest.fixture
def routes(pg_dsn: str, workers: WorkerFactory, legacy_worker: LegacyWorker) -> Iterator[Routes]:
    runs.create_runs_table(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(_NOTE_WRITES)
    workers.start(pg_dsn, tasks=TASKS, concurrency=4, env={"PGQUEUE_TEST_ROUTE": "pg"})
    client = Client(pg_dsn)
    celery = CeleryDispatcher(legacy_worker.app)
    gate = Gate(pg_dsn, ttl=0.5)
    try:
        yield Routes(pg_dsn, client, celery, gate, RoutingDispatcher(client, celery, gate))
    finally:
        gate.close()
        client.close()


# Every row written into a pgqueue table (but the flag the test sets, its history, the worker
# registry, an idle worker's waiting mark, the schema version and the server epoch) is noted by a
# trigger, so even a message enqueued and acked at once, or a reply taken, is seen.
_NOTE_WRITES = """
CREATE TABLE public.pgqueue_writes (tbl text NOT NULL, op text NOT NULL);
CREATE FUNCTION public.note_pgqueue_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgqueue_writes VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NULL;
END $$;
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT table_name FROM information_schema.tables
             WHERE table_schema = 'pgqueue' AND table_type = 'BASE TABLE'
               AND table_name NOT IN ('flag', 'flag_history', 'worker', 'waiting_worker',
                                      'schema_version', 'server_epoch')
    LOOP
        EXECUTE format('CREATE TRIGGER note_write AFTER INSERT OR UPDATE ON pgqueue.%I '
                       'FOR EACH ROW EXECUTE FUNCTION public.note_pgqueue_write()', t);
    END LOOP;
END $$;
"""


def _pgqueue_writes(dsn: str) -> int:
    rows = sum(
        runs.scalar(dsn, f"SELECT count(*) FROM pgqueue.{table}")
        for table in ("message", "result", "dead_letter")
    )
    return rows + int(runs.scalar(dsn, "SELECT count(*) FROM public.pgqueue_writes"))


def _decisions(route: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "pgqueue_gate_decisions_total", {"route": route, "reason": reason}
        )
        or 0.0
    )


def test_gate_off_goes_to_celery_and_touches_no_pgqueue_table(routes: Routes) -> None:
    admin.set_flag(routes.dsn, admin.GATE_FLAG, enabled=False, value="false", source="test")
    results = [routes.router.call("gate.add", [i, 1], timeout=20) for i in range(5)]
    assert [r.value for r in results] == [i + 1 for i in range(5)]
    assert routes.router.call("gate.tagged", ["off-1"], timeout=20).value == {
        "key": "off-1",
        "route": "celery",
    }
    failed = routes.router.call("gate.explode", ["legacy boom"], timeout=20)
    assert failed.kind == "task_error"
    assert failed.error == "ValueError: legacy boom"
    task_id = routes.router.enqueue("gate.tagged", ["off-ff"])
    assert isinstance(task_id, str)
    wait_until(
        lambda: runs.scalar(routes.dsn, "SELECT count(*) FROM test_runs WHERE key='off-ff'") == 1,
        20,
        "the fire-and-forget Celery task",
    )
    assert _pgqueue_writes(routes.dsn) == 0


def test_gate_on_goes_to_postgres_with_equal_results(routes: Routes) -> None:
    admin.set_flag(routes.dsn, admin.GATE_FLAG, enabled=False, value="off", source="test")
    legacy = [routes.router.call("gate.add", [i, 2], timeout=20) for i in range(5)]
    admin.set_flag(routes.dsn, admin.GATE_FLAG, enabled=True, value="on", source="test")
    wait_until(routes.gate.enabled, 5, "the gate to see the flip")
    on_pg = [routes.router.call("gate.add", [i, 2], timeout=20) for i in range(5)]
    assert [r.value for r in on_pg] == [r.value for r in legacy]
    assert routes.router.call("gate.tagged", ["on-1"], timeout=20).value["route"] == "pg"
    failed = routes.router.call("gate.explode", ["pg boom"], timeout=20)
    assert (failed.kind, failed.error) == ("task_error", "ValueError: pg boom")
    assert isinstance(routes.router.enqueue("gate.tagged", ["on-ff"]), int)
    assert _pgqueue_writes(routes.dsn) > 0, "the write detector sees the Postgres route"


@pytest.mark.timeout(240)
def test_flipping_under_load_loses_and_duplicates_nothing(routes: Routes) -> None:
    admin.set_flag(routes.dsn, admin.GATE_FLAG, enabled=False, value="off", source="test")
    stop = threading.Event()
    # Per call: (started, finished, route); every call has its own key.
    log: list[tuple[float, float, str, str]] = []
    errors: list[str] = []

    def caller(n: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"t{n}-{i}"
            started = time.monotonic()
            result = routes.router.call("gate.tagged", [key], timeout=30)
            if not result.ok:
                errors.append(f"{key}: {result.kind} {result.error}")
            else:
                log.append((started, time.monotonic(), key, result.value["route"]))
            i += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    flips: list[tuple[float, str]] = []
    try:
        for k in range(20):
            want = "pg" if k % 2 == 0 else "celery"
            admin.set_flag(
                routes.dsn,
                admin.GATE_FLAG,
                enabled=want == "pg",
                value=str(want == "pg"),
                source="t",
            )
            flipped = time.monotonic()
            flips.append((flipped, want))
            wait_until(
                lambda f=flipped, w=want: (
                    sum(1 for s, _, _, r in log if s > f + 0.05 and r == w) >= 8
                ),
                30,
                f"calls on {want} after flip {k}",
            )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors
    keys = [key for _, _, key, _ in log]
    assert len(keys) == len(set(keys)), "no call returned twice"
    # Every call ran exactly once, on exactly the route it reported.
    rows = runs.query(routes.dsn, "SELECT key, phase FROM test_runs WHERE key LIKE 't%%'")
    ran = {}
    for key, phase in rows:
        assert key not in ran, f"{key} ran twice"
        ran[key] = phase
    assert set(ran) == set(keys), "every call ran, and nothing ran that no caller got back"
    assert {k: r for _, _, k, r in log} == ran, "each call ran on the route it reported"
    # After each flip, how long until no caller started a call on the old route any more.
    lags = []
    for i, (at, want) in enumerate(flips):
        until = flips[i + 1][0] if i + 1 < len(flips) else float("inf")
        stale = [s - at for s, _, _, r in log if at <= s < until and r != want]
        lags.append(max(stale, default=0.0))
    print(f"\ngate flips: 20, calls: {len(log)}, propagation max {max(lags):.3f}s, "
          f"median {sorted(lags)[len(lags) // 2]:.3f}s (ttl {routes.gate.ttl}s)")  # fmt: skip
    assert max(lags) < routes.gate.ttl + 1.0


def test_database_outage_fails_closed_warns_once_and_recovers(
    routes: Routes, caplog: pytest.LogCaptureFixture
) -> None:
    # The gate reads its flag from a server of its own that the test takes away.
    with EmbeddedPostgres() as flags_server:
        migrate(flags_server.dsn)
        admin.set_flag(flags_server.dsn, admin.GATE_FLAG, enabled=True, value="on", source="t")
        gate = Gate(flags_server.dsn, ttl=0.1, connect_timeout=1)
        router = RoutingDispatcher(routes.client, routes.celery, gate)
        assert router.call("gate.tagged", ["before"], timeout=20).value["route"] == "pg"
        errors_before = _decisions("fallback", "error")
        flags_server.stop("immediate")
        caplog.set_level(logging.INFO, logger="pgqueue.gating")
        during = [router.call("gate.tagged", [f"down{i}"], timeout=20) for i in range(10)]
        assert {r.value["route"] for r in during} == {"celery"}

        def logged(level: int) -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.name == "pgqueue.gating" and r.levelno == level
            ]

        assert len(logged(logging.WARNING)) == 1, logged(logging.WARNING)
        assert "routing to the fallback" in logged(logging.WARNING)[0]
        assert _decisions("fallback", "error") >= errors_before + 10
        flags_server.start()
        wait_until(
            lambda: router.call("gate.tagged", ["after"], timeout=20).value["route"] == "pg",
            20,
            "routing to resume by itself",
        )
        assert len(logged(logging.WARNING)) == 1, "one warning for the whole outage"
        assert len(logged(logging.INFO)) == 1
        assert "readable again" in logged(logging.INFO)[0]
        gate.close()


def test_kill_switch_routes_to_fallback_without_any_query(
    routes: Routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.set_flag(routes.dsn, admin.GATE_FLAG, enabled=True, value="on", source="test")
    monkeypatch.setenv("PGQUEUE_TRANSPORT_ENABLED", "false")
    gate = Gate(routes.dsn, ttl=0.0)

    def flag_reads() -> int:
        with psycopg.connect(routes.dsn) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query LIKE '%%FROM pgqueue.flag WHERE key%%'"
            ).fetchone()
        return int(row[0]) if row else 0

    before = flag_reads()
    router = RoutingDispatcher(routes.client, routes.celery, gate)
    for i in range(5):
        assert router.call("gate.tagged", [f"k{i}"], timeout=20).value["route"] == "celery"
    assert gate.reads == 0
    assert flag_reads() == before
    assert gate.decide().reason == "killswitch"
    monkeypatch.setenv("PGQUEUE_TRANSPORT_ENABLED", "true")
    assert gate.decide().route == "pg"
    gate.close()
    assert flag_reads() > before


def test_unparseable_value_is_off_with_a_warning_naming_it(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=True, value="yes please", source="t")
    caplog.set_level(logging.WARNING, logger="pgqueue.gating")
    with Gate(pg_dsn, ttl=0.0) as gate:
        assert gate.decide().route == "fallback"
        assert gate.decide().route == "fallback"
    messages = [r.getMessage() for r in caplog.records if r.name == "pgqueue.gating"]
    assert len(messages) == 1
    assert "'yes please'" in messages[0]


def _pgq(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    return subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "gate", *args],
        capture_output=True,
        text=True,
        env={**env, "PGQUEUE_DSN": dsn},
        timeout=60,
        check=False,
    )


def test_gate_cli_flips_the_flag_the_gate_reads(pg_dsn: str) -> None:
    never = _pgq(pg_dsn, "status", "--json")
    assert (never.returncode, json.loads(never.stdout)) == (0, None), never.stderr
    with Gate(pg_dsn, ttl=0.0) as gate:
        assert gate.decide().route == "fallback"
        on = _pgq(pg_dsn, "on", "--json", "--source", "runbook 42")
        assert on.returncode == 0, on.stderr
        record = json.loads(on.stdout)
        assert record["enabled"] is True
        assert record["value"] == "on"
        assert record["effective"] == "on"
        assert record["source"] == "runbook 42"
        assert record["changed"] is True
        assert gate.decide().route == "pg"
        again = json.loads(_pgq(pg_dsn, "on", "--json").stdout)
        assert again["changed"] is False
        assert again["updated_at"] == record["updated_at"], "updated_at says when it flipped"
        off = _pgq(pg_dsn, "off")
        assert off.returncode == 0, off.stderr
        assert gate.decide().route == "fallback"
    status = _pgq(pg_dsn, "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == "gate pg_queue_enabled: off"
    assert "value:   'off'" in status.stdout
    assert "enabled: false" in status.stdout
    assert "source:  cli " in status.stdout
    assert "changed: " in status.stdout
    # A hand-written bad value is shown as what the gate makes of it: off.
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=True, value="yes please", source="hand")
    shown = _pgq(pg_dsn, "status")
    assert shown.stdout.splitlines()[0] == "gate pg_queue_enabled: off"
    assert "unparseable, so off" in shown.stdout
    assert json.loads(_pgq(pg_dsn, "status", "--json").stdout)["effective"] == "off"


def test_gate_cli_without_a_database_fails_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "gate", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "pgqueue: error: gate: --dsn: no database given (set PGQUEUE_DSN or pass --dsn)"
    ]


def test_celery_route_without_a_worker_is_a_timeout(celery_app: Celery) -> None:
    started = time.monotonic()
    result = CeleryDispatcher(celery_app).call("gate.add", [1, 2], timeout=0.5)
    assert (result.kind, result.error) == ("timeout", "no reply within 0.5s")
    assert result.reply_key, "the Celery task id, to find the message later"
    assert time.monotonic() - started < 5


def test_celery_route_with_the_broker_down_is_an_enqueue_error(fresh_redis: str) -> None:
    app = make_app(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    fast = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}
    app.conf.update(
        result_backend=fresh_redis,
        task_publish_retry_policy=fast,
        broker_connection_timeout=1,
    )
    try:
        result = CeleryDispatcher(app).call("gate.add", [1, 2], timeout=5)
    finally:
        close_app(app)
        gc.collect()
    assert result.kind == "enqueue_error"
    assert result.reply_key == ""
    assert "\n" not in result.error


def _envelopes(url: str, queue: str) -> list[dict[str, object]]:
    """The Celery messages waiting in a Redis queue, minus what differs per message (its ids)."""
    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    found = []
    for item in reversed(raw):  # LPUSHed: oldest last
        message = json.loads(item)
        for name in ("id", "root_id"):
            message["headers"].pop(name)
        for name in ("correlation_id", "delivery_tag"):
            message["properties"].pop(name)
        found.append(message)
    return found


def test_gate_off_sends_the_very_message_the_legacy_code_sent(
    pg_dsn: str, fresh_redis: str, celery_app: Celery
) -> None:
    """Byte for byte: the broker receives the same envelope and body from the router as from the
    application's own ``send_task`` (only the per-message ids differ)."""
    admin.set_flag(pg_dsn, admin.GATE_FLAG, enabled=False, value="off", source="test")
    args, kwargs = [1, 2], {"note": "ünïcode"}
    with Client(pg_dsn) as client, Gate(pg_dsn, ttl=0.0) as gate:
        router = RoutingDispatcher(client, CeleryDispatcher(celery_app), gate)
        # Fire and forget: send_task, then the router's enqueue.
        celery_app.send_task("gate.add", args=args, kwargs=kwargs, queue="bytes")
        assert isinstance(router.enqueue("gate.add", args, kwargs, queue="bytes"), str)
        # Request-reply (no worker listens, so both time out): send_task().get(), then call.
        with pytest.raises(CeleryTimeout):
            celery_app.send_task("gate.add", args=args, kwargs=kwargs, queue="bytes-call").get(
                timeout=0.2
            )
        assert router.call("gate.add", args, kwargs, queue="bytes-call", timeout=0.2).kind == (
            "timeout"
        )
    legacy_fire, routed_fire = _envelopes(fresh_redis, "bytes")
    assert routed_fire == legacy_fire
    legacy_call, routed_call = _envelopes(fresh_redis, "bytes-call")
    assert routed_call == legacy_call
    assert legacy_call["body"] == legacy_fire["body"]  # args, kwargs, embed (base64 JSON)
