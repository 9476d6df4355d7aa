"""Hostile input without a database: text made storable, names and keys bounded, errors sorted
by the one policy (issue 14)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import dberrors, outcomes
from pgqueue.jobs import Job, NotStarted, too_late

KNOWN = frozenset({"t.ok"})


def claimed(**over: Any) -> outcomes.Claimed:
    base: dict[str, Any] = {
        "msg_id": 1,
        "queue": "default",
        "task_name": "t.ok",
        "payload": {"args": [], "kwargs": {}},
        "reply_key": None,
        "priority": 5,
        "tenant": "",
        "read_ct": 1,
        "waited": 0.0,
        "deadline_in": None,
    }
    return outcomes.Claimed(**{**base, **over})


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("a\x00b", "a\\x00b"),
        ("a\udc80b", "a\\udc80b"),
        ("é ✓", "é ✓"),
    ],
)
def test_storable_keeps_what_the_text_says(text: str, stored: str) -> None:
    out = outcomes.storable(text, 1000)
    assert out == stored
    out.encode()  # encodable: no surrogate left
    assert "\x00" not in out


def test_storable_caps_with_a_marker_at_a_character_boundary() -> None:
    out = outcomes.storable("é" * 100_000, 1000)
    assert len(out.encode()) <= 1000
    assert out.startswith("é" * 100)
    assert out.endswith(f"… [truncated: {200_000 - len(out.split('…')[0].encode())} more bytes]")


def test_error_text_of_an_exception_whose_str_raises() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert outcomes.error_text(Nasty()) == "Nasty: <unprintable message: RuntimeError>"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"task_name": "t" * 256}, "256 characters, over the limit of 255"),
        ({"task_name": "a\nb"}, "contains control characters"),
        ({"reply_key": "k" * 1025}, "invalid reply key: 1025 bytes, over the limit of 1024"),
    ],
)
def test_admit_bounds_names_and_keys(over: dict[str, Any], reason: str) -> None:
    verdict = outcomes.admit(claimed(**over), KNOWN, 3)
    assert isinstance(verdict, outcomes.DeadLetter)
    assert reason in verdict.reason


def test_unknown_tasks_share_one_metric_label() -> None:
    assert outcomes.metric_task("t.ok", KNOWN) == "t.ok"
    assert outcomes.metric_task("bogus.1", KNOWN) == outcomes.UNKNOWN_TASK_LABEL
    assert outcomes.metric_task("bogus.2", KNOWN) == outcomes.UNKNOWN_TASK_LABEL


def test_settle_makes_a_task_error_storable() -> None:
    run = outcomes.RunResult(False, None, "ValueError: a\x00b", 0.1)
    action = outcomes.settle(
        claimed(reply_key="k"),
        run,
        max_attempts=3,
        max_result_bytes=100,
        retry_backoff=1,
        retry_backoff_max=1,
    )
    assert isinstance(action, outcomes.Ack) and action.error == "ValueError: a\\x00b"


def test_not_started_is_typed_and_dead_letters_once() -> None:
    job = Job(1, 1, "t.ok", [], {}, True, deadline=10.0, expected=0.0)
    assert too_late(job, 9.0) is None
    late = too_late(job, 12.5)
    assert late == NotStarted(2.5)
    assert outcomes.deadline_passed(late.late_by).reason.startswith(
        "deadline passed: the caller stopped waiting 2.500s"
    )


def _error(cls: type[psycopg.Error], sqlstate: str | None) -> psycopg.Error:
    exc = cls("boom")
    if sqlstate is not None:
        exc.sqlstate = sqlstate  # type: ignore[misc]
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_error(psycopg.OperationalError, None), dberrors.Kind.OUTAGE),  # connection broken
        (psycopg.errors.AdminShutdown("x"), dberrors.Kind.OUTAGE),
        (psycopg.errors.ReadOnlySqlTransaction("x"), dberrors.Kind.OUTAGE),
        (psycopg.errors.TooManyConnections("x"), dberrors.Kind.OUTAGE),
        (psycopg.errors.SerializationFailure("x"), dberrors.Kind.OUTAGE),
        (psycopg.errors.DeadlockDetected("x"), dberrors.Kind.OUTAGE),
        (psycopg.errors.QueryCanceled("x"), dberrors.Kind.OUTAGE),
        (psycopg.InterfaceError("the connection is closed"), dberrors.Kind.OUTAGE),
        (psycopg.errors.UntranslatableCharacter("x"), dberrors.Kind.ROW),
        (psycopg.errors.ProgramLimitExceeded("x"), dberrors.Kind.ROW),
        (psycopg.errors.UniqueViolation("x"), dberrors.Kind.ROW),
        (_error(psycopg.DataError, None), dberrors.Kind.ROW),  # a NUL the driver refused
        (UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"), dberrors.Kind.ROW),
        (psycopg.errors.UndefinedTable("x"), dberrors.Kind.OTHER),
        (RuntimeError("x"), dberrors.Kind.OTHER),
    ],
)
def test_the_error_policy_sorts_errors_by_sqlstate_class(
    exc: BaseException, kind: dberrors.Kind
) -> None:
    assert dberrors.classify(exc) is kind


def test_notify_failures_are_recognised() -> None:
    assert dberrors.about_notify(Exception("too many notifications in the NOTIFY queue"))
    assert dberrors.about_notify(Exception("payload string too long"))
    assert not dberrors.about_notify(Exception("duplicate key"))


def test_a_result_that_breaks_the_encoder_is_a_reason_not_a_crash() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    text, why = outcomes.encode_result(deep)
    assert text is None and why.startswith("reply not stored: result is not JSON-serialisable")
