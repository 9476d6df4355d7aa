"""Named queries, settings validation, reply parsing and flag parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pgqueue import admin, sqlfiles
from pgqueue.replies import CallResult, from_row
from pgqueue.serving import Health, serve
from pgqueue.settings import WorkerSettings
from tests.support.workers import http_get, wait_until

PACKAGE = Path(__file__).resolve().parents[2] / "worker" / "pgqueue"
NAMED = re.compile(r'query\(\s*"([a-z0-9_]+)"\s*\)')


def test_every_named_query_is_used_and_every_use_exists() -> None:
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    used = set(NAMED.findall(source))
    defined = set(sqlfiles.queries())
    assert used - defined == set(), "code refers to queries that do not exist"
    assert defined - used == set(), "queries.sql holds entries nothing uses"


def test_each_named_query_is_said_by_one_function_of_the_store() -> None:
    """The data-access layer (architecture §11): a query's name appears once, in pgqueue.store;
    any other module calls the store's function."""
    places = [
        (name, str(path.relative_to(PACKAGE)))
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in NAMED.findall(path.read_text())
    ]
    assert places, "no named query found: the scan is looking in the wrong place"
    outside = [f"{where}: {name}" for name, where in places if not where.startswith("store/")]
    assert outside == [], "named queries run outside pgqueue.store"
    names = [name for name, _ in places]
    assert sorted({n for n in names if names.count(n) > 1}) == [], "a query said in two places"


def test_parse_named_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate query name 'a'"):
        sqlfiles.parse_named("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [v for v, _, _ in sqlfiles.migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_worker_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_QUEUES", "a, b.c ,d:e")
    monkeypatch.setenv("PGQUEUE_TASK_TIME_LIMIT", "12.5")
    s = WorkerSettings()
    assert s.queues == ["a", "b.c", "d:e"]
    assert s.task_time_limit == 12.5


@pytest.mark.parametrize(
    ("field", "value"),
    [("queues", "ok,bad name"), ("concurrency", "0"), ("lease", "-1"), ("metrics_port", "70000")],
)
def test_worker_settings_reject_bad_values(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(f"PGQUEUE_{field.upper()}", value)
    with pytest.raises(ValidationError) as info:
        WorkerSettings()
    assert info.value.errors()[0]["loc"][0] == field


def test_every_setting_is_documented() -> None:
    for name, field in WorkerSettings.model_fields.items():
        assert field.description, name
        assert "Default" in field.description or name in {"dsn", "tasks", "worker_id"}, name


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (("completed", {"x": 1}, ""), CallResult.success("k", {"x": 1})),
        (("completed", None, ""), CallResult.success("k", None)),
        (("failed", None, "ValueError: x"), CallResult.failure("k", "task_error", "ValueError: x")),
    ],
)
def test_reply_rows(row: tuple[object, object, object], expected: CallResult) -> None:
    assert from_row("k", *row) == expected


@pytest.mark.parametrize("row", [("failed", None, ""), ("weird", 1, ""), (None, None, None)])
def test_off_contract_rows_are_malformed(row: tuple[object, object, object]) -> None:
    assert from_row("k", *row).kind == "malformed_reply"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        (" ON ", True),
        ("1", True),
        ("false", False),
        ("off", False),
        ("", False),
        ("maybe", None),
        ("tru", None),
    ],
)
def test_flag_values(text: str, value: bool | None) -> None:
    assert admin.parse_flag_value(text) is value


def test_healthz_turns_503_when_the_heartbeat_is_stale() -> None:
    health = Health(staleness=0.2)
    server = serve(health, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        health.beat()
        assert http_get(url + "/healthz")[0] == 200
        wait_until(lambda: health.age() > 0.2, 5, "the heartbeat to age")
        status, body = http_get(url + "/healthz")
        assert status == 503 and "stale heartbeat" in body
        health.beat()
        assert http_get(url + "/healthz")[0] == 200
        assert http_get(url + "/readyz")[0] == 503
        health.ready = True
        assert http_get(url + "/readyz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
