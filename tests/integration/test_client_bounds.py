"""Hostile arguments: call() never raises, enqueue() raises a typed error naming the field."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest

from pgqueue import Client, ClientSettings, db, metrics
from pgqueue.errors import ConfigurationError, EnqueueError, TaskRegistrationError
from pgqueue.tasks import task


class _Opaque:
    """Not JSON-serialisable."""


# (field the error must name, keyword arguments of the call)
BAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("timeout", {"timeout": "x"}),
    ("timeout", {"timeout": math.nan}),
    ("timeout", {"timeout": math.inf}),
    ("timeout", {"timeout": -1}),
    ("timeout", {"timeout": 0}),
    ("timeout", {"timeout": True}),
    ("priority", {"priority": -1}),
    ("priority", {"priority": 11}),
    ("priority", {"priority": "5"}),
    ("priority", {"priority": 5.5}),
    ("task", {"task": ""}),
    ("task", {"task": None}),
    ("task", {"task": "x" * 256}),
    ("task", {"task": "bad name"}),
    ("task", {"task": "nul\x00name"}),
    ("queue", {"queue": None}),
    ("queue", {"queue": "bad queue"}),
    ("tenant", {"tenant": 5}),
    ("tenant", {"tenant": "t" * 256}),
    ("args", {"args": "abc"}),
    ("args", {"args": _Opaque()}),
    ("args", {"args": [_Opaque()]}),
    ("args", {"args": [math.nan]}),
    ("args", {"args": ["a\x00b"]}),
    ("args", {"args": ["\ud800"]}),
    ("kwargs", {"kwargs": {1: "a"}}),
    ("kwargs", {"kwargs": ["not", "a", "dict"]}),
]


@pytest.fixture
def client(pg_dsn: str) -> Any:
    with Client(settings=ClientSettings(dsn=pg_dsn, max_payload_bytes=1000)) as c:
        yield c


@pytest.mark.parametrize(("field", "bad"), BAD_CALLS)
def test_call_turns_a_bad_argument_into_an_enqueue_error(
    client: Client, field: str, bad: dict[str, Any]
) -> None:
    call: dict[str, Any] = {"task": "demo.echo", "args": [], "timeout": 5, **bad}
    result = client.call(call.pop("task"), **call)
    assert result.kind == "enqueue_error", result
    assert result.error.startswith(f"{field}: "), result.error


@pytest.mark.parametrize(("field", "bad"), [b for b in BAD_CALLS if b[0] != "timeout"])
def test_enqueue_raises_a_configuration_error_naming_the_field(
    client: Client, field: str, bad: dict[str, Any]
) -> None:
    call: dict[str, Any] = {"task": "demo.echo", "args": [], **bad}
    with pytest.raises(ConfigurationError) as caught:
        client.enqueue(call.pop("task"), **call)
    assert caught.value.field == field


def test_payload_cap(client: Client) -> None:
    result = client.call("demo.echo", ["x" * 2000], timeout=5)
    assert result.kind == "enqueue_error"
    assert result.error.startswith("payload: ") and "max_payload_bytes=1000" in result.error
    with pytest.raises(ConfigurationError) as caught:
        client.enqueue("demo.echo", ["x" * 2000])
    assert caught.value.field == "payload"
    assert client.enqueue("demo.echo", ["x" * 500]) > 0
    with pytest.raises(ConfigurationError) as caught:
        client.enqueue("demo.echo", delay=-1)
    assert caught.value.field == "delay"


def test_invalid_task_names_share_one_metric_label(client: Client) -> None:
    for i in range(3):
        client.call(f"bogus name {i}", timeout=5)
    samples = {
        s.labels["task"]
        for m in metrics.CALL_DURATION.collect()
        for s in m.samples
        if s.labels.get("outcome") == "enqueue_error"
    }
    assert "<invalid>" in samples
    assert not any(name.startswith("bogus") for name in samples)


def test_reply_keys_are_bounded(client: Client) -> None:
    for key in ("k" * 256, "", "bad key", None):
        result = client.wait_for_reply(key, 1)  # type: ignore[arg-type]
        assert result.kind == "enqueue_error" and result.error.startswith("reply_key: ")
    assert client.wait_for_reply("fine-key", "x").error.startswith("timeout: ")  # type: ignore[arg-type]


def test_task_names_are_checked_at_registration() -> None:
    for name in ("x" * 256, "bad name", "-starts-badly"):
        with pytest.raises(TaskRegistrationError, match="name"):
            task(name=name)(lambda: None)
    assert task(name="ok.name-1:v2")(lambda: 1)() == 1


def test_enqueue_to_an_unreachable_database_is_an_enqueue_error() -> None:
    settings = ClientSettings(dsn="postgresql://app@127.0.0.1:1/app", connect_timeout=1)
    with Client(settings=settings) as client, pytest.raises(EnqueueError):
        client.enqueue("demo.echo")


def test_a_statement_on_a_closed_connection_counts_as_unsent(pg_dsn: str) -> None:
    conn = db.connect(pg_dsn)
    conn.close()
    with pytest.raises(psycopg.OperationalError) as caught:
        conn.execute("SELECT 1")
    assert db.unsent(caught.value)
