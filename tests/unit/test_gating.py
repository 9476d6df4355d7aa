"""The gate, the routing dispatcher and the Celery adapter over in-memory fakes: caching under
threads, fail-closed reads, the once-only logging, the kill-switch, and the mapping of Celery
outcomes. The real Postgres / Celery / Redis behaviour is in tests/integration/test_gate.py."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from prometheus_client import REGISTRY

from pgqueue.celery_adapter import CeleryDispatcher
from pgqueue.gating import KILL_SWITCH_ENV, Gate
from pgqueue.replies import CallResult
from pgqueue.routing import RoutingDispatcher
from tests.support.workers import wait_until

# --- an in-memory flag table behind a counting connection factory ---------------------------


@dataclass
class FlagTable:
    value: str | None = "on"  # None: no row
    enabled: bool = True
    error: str = ""  # non-empty: every connect and query fails with it
    connects: int = 0
    reads: int = 0
    hold: threading.Event | None = None  # set: reads block until it is set
    lock: threading.Lock = field(default_factory=threading.Lock)
    opened: list[FakeConnection] = field(default_factory=list)  # every connection handed out

    def connect(self) -> FakeConnection:
        with self.lock:
            self.connects += 1
        if self.error:
            raise psycopg.OperationalError(self.error)
        conn = FakeConnection(self)
        self.opened.append(conn)
        return conn


class FakeCursor:
    def __init__(self, row: dict[str, Any] | None) -> None:
        self.row = row

    def fetchone(self) -> dict[str, Any] | None:
        return self.row


class FakeConnection:
    def __init__(self, table: FlagTable) -> None:
        self.table = table
        self.closed = False

    def transaction(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def execute(self, query: Any, params: Mapping[str, Any]) -> FakeCursor:
        table = self.table
        if table.error:
            raise psycopg.OperationalError(table.error)
        if "key" not in params:  # gate_read_limits
            return FakeCursor(None)
        with table.lock:
            table.reads += 1
        if table.hold is not None:
            table.hold.wait(10)
        if table.value is None:
            return FakeCursor(None)
        return FakeCursor({"value": table.value, "enabled": table.enabled})

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def table() -> FlagTable:
    return FlagTable()


@pytest.fixture(autouse=True)
def _no_kill_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KILL_SWITCH_ENV, raising=False)


def make_gate(table: FlagTable, ttl: float = 0.0, connect_timeout: float = 2.0) -> Gate:
    return Gate("", ttl=ttl, connect_timeout=connect_timeout, connect=table.connect)  # type: ignore[arg-type]


def decisions(route: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "pgqueue_gate_decisions_total", {"route": route, "reason": reason}
        )
        or 0.0
    )


def gate_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "pgqueue.gating" and r.levelno == level
    ]


# --- the gate ---------------------------------------------------------------------------------


def test_reads_follow_the_flag_and_count_each_decision(table: FlagTable) -> None:
    gate = make_gate(table)
    on_before, off_before = decisions("pg", "enabled"), decisions("fallback", "disabled")
    assert gate.decide().route == "pg"
    table.value = "off"
    assert gate.decide().route == "fallback"
    table.value = None  # never set: off
    assert gate.decide().reason == "disabled"
    table.value, table.enabled = "", True  # no raw text: the enabled column decides
    assert gate.decide().route == "pg"
    assert decisions("pg", "enabled") == on_before + 2
    assert decisions("fallback", "disabled") == off_before + 2
    assert table.connects == 1, "one dedicated connection, reused"


def test_one_read_per_ttl_under_eight_threads(table: FlagTable) -> None:
    ttl = 0.2
    gate = make_gate(table, ttl=ttl)
    start = threading.Barrier(8)
    counts = [0] * 8
    routes: set[str] = set()

    def caller(n: int) -> None:
        start.wait()
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            routes.add(gate.decide().route)
            counts[n] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - began
    assert routes == {"pg"}
    assert sum(counts) > 1000
    # One read when the cache is empty, then at most one per TTL.
    assert 1 <= table.reads <= elapsed / ttl + 1, (table.reads, elapsed)
    print(f"\n{sum(counts)} decisions by 8 threads in {elapsed:.2f}s, {table.reads} reads")


def test_a_flip_reaches_callers_within_the_ttl(table: FlagTable) -> None:
    gate = make_gate(table, ttl=0.1)
    assert gate.enabled()
    table.value = "false"
    flipped = time.monotonic()
    wait_until(lambda: not gate.enabled(), 2, "the gate to follow the flip")
    assert time.monotonic() - flipped < 0.1 + 1.0


def test_read_errors_fail_closed_with_one_warning_per_outage(
    table: FlagTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgqueue.gating")
    gate = make_gate(table)
    assert gate.decide().route == "pg"
    errors_before = decisions("fallback", "error")
    table.error = "connection refused"
    during = [gate.decide() for _ in range(25)]
    assert {(d.route, d.reason) for d in during} == {("fallback", "error")}
    assert decisions("fallback", "error") == errors_before + 25
    warnings = gate_records(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "connection refused" in warnings[0]
    assert "pg_queue_enabled" in warnings[0]
    table.error = ""
    assert gate.decide().route == "pg", "recovers by itself"
    infos = gate_records(caplog, logging.INFO)
    assert len(infos) == 1
    assert "readable again" in infos[0]
    # A second outage is a new outage: one more warning.
    table.error = "the server closed the connection"
    for _ in range(5):
        gate.decide()
    assert len(gate_records(caplog, logging.WARNING)) == 2


def test_a_read_that_hangs_serves_the_last_decision_briefly_then_fails_closed(
    table: FlagTable, caplog: pytest.LogCaptureFixture
) -> None:
    # connect_timeout is how long the last decision is served beside a hung read: 1 s, so a
    # descheduled test thread still asks inside it.
    gate = make_gate(table, ttl=0.05, connect_timeout=1.0)
    assert gate.decide().route == "pg"
    table.hold = threading.Event()
    time.sleep(0.06)  # let the cached decision expire (a TTL, not a synchronisation)
    reader = threading.Thread(target=gate.decide)
    reader.start()
    wait_until(lambda: table.reads == 2, 2, "the reader to be inside its read")
    stuck_at = time.monotonic()
    assert gate.decide().route == "pg", "the previous decision while another caller reads"
    wait_until(lambda: gate.decide().reason == "error", 2, "callers to fail closed")
    waited = time.monotonic() - stuck_at
    assert waited < 1.0 + 1.0, waited  # connect_timeout (plus scheduling), not the 10 s hold
    started = time.monotonic()
    assert gate.decide().reason == "error"
    assert time.monotonic() - started < 1.0, "callers do not queue behind the stuck read"
    warnings = gate_records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "has not answered" in warnings[0]
    table.hold.set()
    reader.join(5)
    assert gate.decide().route == "pg"


def test_the_first_read_is_awaited_by_concurrent_callers(table: FlagTable) -> None:
    gate = make_gate(table, ttl=10, connect_timeout=2.0)
    table.hold = threading.Event()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(gate.decide().route)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: table.reads == 1, 2, "the first read")
    table.hold.set()
    for t in threads:
        t.join(5)
    assert results == ["pg"] * 4
    assert table.reads == 1


def test_unparseable_value_is_off_with_one_warning_per_distinct_value(
    table: FlagTable, caplog: pytest.LogCaptureFixture
) -> None:
    table.value = "yes please"
    gate = make_gate(table)
    assert [gate.decide().reason for _ in range(3)] == ["disabled"] * 3
    table.value = "ON!"
    assert gate.decide().route == "fallback"
    table.value = "yes please"
    assert gate.decide().route == "fallback"
    warnings = gate_records(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert "'yes please'" in warnings[0]
    assert "'ON!'" in warnings[1]


@pytest.mark.parametrize("value", ["false", "off", "0", " FALSE "])
def test_kill_switch_makes_no_database_access(
    table: FlagTable, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(KILL_SWITCH_ENV, value)
    gate = make_gate(table)
    before = decisions("fallback", "killswitch")
    assert {gate.decide() for _ in range(10)} == {gate.decide()}
    assert gate.decide().reason == "killswitch"
    assert decisions("fallback", "killswitch") == before + 12
    assert (table.connects, table.reads, gate.reads) == (0, 0, 0)


@pytest.mark.parametrize("value", ["", "true", "on"])
def test_kill_switch_unset_or_on_leaves_the_flag_in_charge(
    table: FlagTable, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(KILL_SWITCH_ENV, value)
    assert make_gate(table).decide().route == "pg"


def test_unparseable_kill_switch_fails_closed_and_names_the_value(
    table: FlagTable, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KILL_SWITCH_ENV, "nope-ish")
    gate = make_gate(table)
    assert [gate.decide().reason for _ in range(3)] == ["killswitch"] * 3
    assert table.connects == 0
    warnings = gate_records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "'nope-ish'" in warnings[0]


def test_a_forked_child_does_not_use_the_parents_connection(
    table: FlagTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = make_gate(table)
    assert gate.decide().route == "pg"
    [parents] = table.opened
    monkeypatch.setattr("pgqueue.gating.os.getpid", lambda: -1)  # as if in a forked child
    assert gate.decide().route == "pg"
    assert len(table.opened) == 2, "the child opens a session of its own"
    assert not parents.closed, "the parent's session is left alone"
    assert table.connects == 2


def test_gate_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="ttl"):
        Gate("", ttl=-1)
    with pytest.raises(ValueError, match="connect_timeout"):
        Gate("", connect_timeout=0)


# --- the routing dispatcher -------------------------------------------------------------------


@dataclass
class Recorder:
    name: str
    seen: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def call(self, task: str, *args: Any, **options: Any) -> CallResult:
        self.seen.append((self.name, task, args, options))
        return CallResult.success(self.name, task)

    def enqueue(self, task: str, *args: Any, **options: Any) -> str:
        self.seen.append((self.name, task, args, options))
        return self.name


def test_router_sends_each_call_to_exactly_one_route(
    table: FlagTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pgqueue.routing")
    pg, legacy = Recorder("pg"), Recorder("legacy")
    router = RoutingDispatcher(pg, legacy, make_gate(table))  # type: ignore[arg-type]
    assert router.call("t.a", [1], timeout=3).reply_key == "pg"
    table.value = "off"
    assert router.call("t.a", [2], {"k": 1}, queue="q", priority=7).reply_key == "legacy"
    assert router.enqueue("t.b", [3], delay=2.0, tenant="acme") == "legacy"
    assert pg.seen == [("pg", "t.a", ([1], None), {"timeout": 3})]
    assert legacy.seen == [
        ("legacy", "t.a", ([2], {"k": 1}), {"timeout": None, "queue": "q", "priority": 7}),
        ("legacy", "t.b", ([3], None), {"delay": 2.0, "tenant": "acme"}),
    ]
    debug = [r.getMessage() for r in caplog.records if r.name == "pgqueue.routing"]
    assert debug == [
        "gate: call t.a -> pg (enabled)",
        "gate: call t.a -> fallback (disabled)",
        "gate: enqueue t.b -> fallback (disabled)",
    ]
    router.call("t.c", cancel_on_timeout=True)  # passed on only when given, like the others
    given = {"timeout": None, "cancel_on_timeout": True}
    assert legacy.seen[-1] == ("legacy", "t.c", ((), None), given)


# --- the Celery adapter -----------------------------------------------------------------------


class FakeAsyncResult:
    def __init__(self, outcome: Any, state: str = "SUCCESS") -> None:
        self.id = "celery-task-id"
        self.outcome = outcome
        self.state = state
        self.waited: list[tuple[float, bool]] = []

    def get(self, timeout: float, propagate: bool = True) -> Any:
        self.waited.append((timeout, propagate))
        if isinstance(self.outcome, type) or self.state == "RAISE":
            raise self.outcome  # type: ignore[misc]
        return self.outcome

    def successful(self) -> bool:
        return self.state == "SUCCESS"

    def revoke(self, terminate: bool = False) -> None:
        self.revoked = terminate


class FakeApp:
    def __init__(self, result: FakeAsyncResult | Exception) -> None:
        self.result = result
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, **options: Any) -> FakeAsyncResult:
        self.sent.append((name, options))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_celery_call_is_the_legacy_send_task_then_get() -> None:
    app = FakeApp(FakeAsyncResult({"x": 1}))
    result = CeleryDispatcher(app).call("legacy.t", (1, 2), {"a": "b"}, timeout=7)
    assert result == CallResult.success("celery-task-id", {"x": 1})
    assert app.sent == [("legacy.t", {"args": [1, 2], "kwargs": {"a": "b"}})]
    assert app.result.waited == [(7, False)]  # type: ignore[union-attr]
    CeleryDispatcher(app, send_options={"expires": 60}).call("legacy.t", queue="q", priority=3)
    assert app.sent[-1] == (
        "legacy.t",
        {"args": [], "kwargs": {}, "expires": 60, "queue": "q", "priority": 3},
    )


def test_celery_task_failure_is_a_task_error_with_type_and_message() -> None:
    app = FakeApp(FakeAsyncResult(ValueError("boom"), state="FAILURE"))
    result = CeleryDispatcher(app).call("legacy.t", timeout=1)
    assert (result.kind, result.error, result.reply_key) == (
        "task_error",
        "ValueError: boom",
        "celery-task-id",
    )
    revoked = CeleryDispatcher(FakeApp(FakeAsyncResult(None, state="REVOKED"))).call("t")
    assert (revoked.kind, revoked.error) == ("cancelled", "revoked")
    terminated = FakeAsyncResult(TaskRevokedError("terminated"), state="REVOKED")
    revoked = CeleryDispatcher(FakeApp(terminated)).call("t")
    assert (revoked.kind, revoked.error) == ("cancelled", "TaskRevokedError: terminated")
    other = CeleryDispatcher(FakeApp(FakeAsyncResult(None, state="IGNORED"))).call("t")
    assert (other.kind, other.error) == ("task_error", "task ended in state IGNORED")


def test_celery_timeout_and_transport_errors_map_onto_their_kinds() -> None:
    timed_out = CeleryDispatcher(FakeApp(FakeAsyncResult(CeleryTimeout("late"), "RAISE")))
    result = timed_out.call("legacy.t", timeout=0.5)
    assert (result.kind, result.error) == ("timeout", "no reply within 0.5s")
    assert not hasattr(timed_out.app.result, "revoked")  # the legacy behaviour: left running
    stopped = CeleryDispatcher(FakeApp(FakeAsyncResult(CeleryTimeout("late"), "RAISE")))
    assert stopped.call("legacy.t", timeout=0.5, cancel_on_timeout=True).kind == "timeout"
    assert stopped.app.result.revoked is True  # type: ignore[union-attr]
    backend_down = CeleryDispatcher(FakeApp(FakeAsyncResult(ConnectionError("reset"), "RAISE")))
    result = backend_down.call("legacy.t", timeout=1)
    assert result.kind == "timeout"
    assert result.error == "waiting for the reply failed: ConnectionError: reset"
    broker_down = CeleryDispatcher(FakeApp(OSError("broker unreachable")))
    result = broker_down.call("legacy.t", timeout=1)
    assert (result.kind, result.error, result.reply_key) == (
        "enqueue_error",
        "OSError: broker unreachable",
        "",
    )


def test_celery_enqueue_returns_the_task_id_and_maps_delay_to_countdown() -> None:
    app = FakeApp(FakeAsyncResult(None))
    assert CeleryDispatcher(app).enqueue("legacy.t", [1], delay=5, tenant="ignored") == (
        "celery-task-id"
    )
    assert app.sent == [("legacy.t", {"args": [1], "kwargs": {}, "countdown": 5})]


def test_routes_share_one_surface() -> None:
    """Every option of the router is accepted by both routes (checked by signature)."""
    import inspect

    from pgqueue.client import Client

    for verb in ("call", "enqueue"):
        wanted = set(inspect.signature(getattr(RoutingDispatcher, verb)).parameters)
        for route in (Client, CeleryDispatcher):
            assert wanted <= set(inspect.signature(getattr(route, verb)).parameters), (route, verb)
