"""Cancellation's pure parts (issue 19): what a cancel names, how its answer reads, the cancelled
reply kind, and the cancel_on_timeout option from the decorator to the worker's reading of it."""

from __future__ import annotations

from typing import Any

import pytest

import pgqueue
from pgqueue import cancelling, limits, producing
from pgqueue.errors import ConfigurationError, UnknownMessage
from pgqueue.replies import ReplyStatus, from_row
from pgqueue.tasks import TaskOptions

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (42, (42, None)),
        ("42", (42, None)),  # the CLI's ID
        ("0123abcd.i.9f", (None, "0123abcd.i.9f")),
        ("u.5d2c", (None, "u.5d2c")),
    ],
)
def test_a_target_is_a_msg_id_or_a_reply_key(target: object, expected: tuple[Any, Any]) -> None:
    assert cancelling.target_of(target) == expected


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (0, "a msg_id is ≥ 1, got 0"),
        (-3, "a msg_id is ≥ 1, got -3"),
        (True, "must be a msg_id (int) or a reply key (str), got bool"),
        (4.5, "must be a msg_id (int) or a reply key (str), got float"),
        ("has space", "invalid reply key 'has space'"),
        ("", "invalid reply key ''"),
    ],
)
def test_a_bad_target_is_an_error_naming_it(target: object, problem: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        cancelling.target_of(target)
    assert problem in str(err.value)


def test_params_record_who_cancels() -> None:
    params = cancelling.params(7, "cli ann@box")
    assert params["msg_id"] == 7 and params["reply_key"] is None
    assert params["by"] == "cli ann@box"
    assert cancelling.params("key-1")["by"].startswith("pid ")


def row(**over: Any) -> dict[str, Any]:
    base = {
        "outcome": "cancelled",
        "state": "running",
        "msg_id": 42,
        "queue": "default",
        "task_name": "report.build",
        "reply_key": None,
        "claimed_by": "w-1:7",
        "detail": "cancelled while running on w-1:7 by cli ann@box",
    }
    return {**base, **over}


def test_answers_read_as_what_happened() -> None:
    running = cancelling.from_row(row(), 42)
    assert running.cancelled
    assert str(running) == (
        "msg_id 42 (report.build on queue default) cancelled while running on w-1:7: "
        "its run is killed"
    )
    waiting = cancelling.from_row(row(state="waiting", claimed_by=None), 42)
    assert str(waiting).endswith("cancelled while waiting: it will never run")
    done = cancelling.from_row(
        row(
            outcome="already_done",
            state="finished",
            msg_id=None,
            queue=None,
            task_name=None,
            reply_key="k1",
            claimed_by=None,
            detail="its reply is stored (completed)",
        ),
        "k1",
    )
    assert not done.cancelled
    assert str(done) == "reply key k1 already done (finished): its reply is stored (completed)"
    assert done.as_dict()["outcome"] == "already_done"


def test_unknown_is_an_error_naming_the_target() -> None:
    with pytest.raises(UnknownMessage) as err:
        cancelling.from_row(row(outcome="unknown", detail="no message has this id"), 999)
    assert str(err.value) == "msg_id 999: no message has this id"
    assert err.value.target == "msg_id 999"
    assert isinstance(err.value, pgqueue.CancelError)
    assert isinstance(err.value, pgqueue.PgQueueError)


def test_a_cancelled_reply_is_its_own_kind() -> None:
    result = from_row("k", ReplyStatus.CANCELLED.value, None, "cancelled while waiting by x")
    assert (result.ok, result.kind, result.error) == (
        False,
        "cancelled",
        "cancelled while waiting by x",
    )


def test_cancel_on_timeout_travels_in_the_headers_and_is_read_back() -> None:
    assert producing.option_headers(TaskOptions(cancel_on_timeout=True)) == {
        "cancel_on_timeout": True
    }
    assert producing.option_headers(TaskOptions(cancel_on_timeout=False)) == {}
    with pytest.raises(ConfigurationError, match="cancel_on_timeout: must be true or false"):
        producing.option_headers(TaskOptions(cancel_on_timeout="yes"))  # type: ignore[arg-type]
    asked, problems = limits.requested({"headers": {"cancel_on_timeout": True}})
    assert asked.cancel_on_timeout and problems == []
    assert not limits.requested({"headers": {}})[0].cancel_on_timeout
    asked, problems = limits.requested({"headers": {"cancel_on_timeout": "true"}})
    assert not asked.cancel_on_timeout
    assert problems == ["cancel_on_timeout: must be true or false, got 'true'"]


def test_cancel_on_timeout_per_call_joins_the_calls_options() -> None:
    assert producing.with_cancel_on_timeout(None, None) is None
    assert producing.with_cancel_on_timeout(None, True) == TaskOptions(cancel_on_timeout=True)
    given = TaskOptions(time_limit=5)
    assert producing.with_cancel_on_timeout(given, True) == TaskOptions(
        time_limit=5, cancel_on_timeout=True
    )
    with pytest.raises(ConfigurationError, match="cancel_on_timeout"):
        producing.with_cancel_on_timeout(None, 1)


def test_a_task_can_ask_for_cancel_on_timeout() -> None:
    @pgqueue.task(name="unit.cancel_on_timeout", cancel_on_timeout=True)
    def stoppable() -> None:
        return None

    assert stoppable.options.cancel_on_timeout is True
    with pytest.raises(pgqueue.errors.TaskRegistrationError, match="cancel_on_timeout"):
        pgqueue.task(name="unit.bad_cancel", cancel_on_timeout=3)(stoppable.func)  # type: ignore[call-overload]


def test_a_handle_can_ask_for_it_per_use() -> None:
    @pgqueue.task(name="unit.cancel_per_use", time_limit=9)
    def plain() -> None:
        return None

    assert plain.options.cancel_on_timeout is None
    stoppable = plain.using(cancel_on_timeout=True)
    assert stoppable.options == TaskOptions(time_limit=9, cancel_on_timeout=True)
    assert plain.options.cancel_on_timeout is None  # the handle keeps its defaults
    with pytest.raises(ConfigurationError, match="cancel_on_timeout"):
        plain.using(cancel_on_timeout="yes")  # type: ignore[arg-type]
