"""How a message is put on a queue, shared by every client (sync and asyncio).

The statement parameters are built and checked here, once, so :class:`~pgqueue.Client` and an
asyncio client send the same messages: every argument checked (errors name it), per-task options
in the payload's ``headers``, a unique key routed to ``pgqueue.enqueue_unique``. A client runs
the statement :func:`pgqueue.store.calls.enqueue` builds from these parameters on its own pool or
on the caller's connection (:func:`execute_on`), inside the caller's transaction: the message then
commits or rolls back with it, and the workers' wake-up NOTIFY is delivered by that commit.

Per-task options travel as payload headers (read by the worker; its own limits stay the
ceiling): ``time_limit`` (seconds, float), ``max_attempts`` (int), ``retry_backoff`` (seconds,
float), ``cancel_on_timeout`` (true, or absent). A message without them runs on the worker's
settings.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgqueue import arguments
from pgqueue.errors import ConfigurationError
from pgqueue.settings import ClientSettings
from pgqueue.store import Statement
from pgqueue.tasks import TaskOptions

__all__ = ["Message", "TaskOptions", "batch_params", "execute_on", "message_params"]

# Reply keys of unique calls: every caller that attaches to the same message waits on this key,
# so its NOTIFY goes to the shared channel (a wake-up hash) and each caller reads the row without
# deleting it (the retention sweep removes it after result_ttl).
SHARED_KEY_PREFIX = "u."
UNIQUE_KEY_MAX = 255


def option_headers(options: TaskOptions | None) -> dict[str, Any]:
    """The payload headers of per-task options, each checked (errors name the option)."""
    if options is None:
        return {}
    if not isinstance(options, TaskOptions):
        raise ConfigurationError("options", f"must be a TaskOptions, got {options!r:.80}")
    out: dict[str, Any] = {}
    if options.time_limit is not None:
        out["time_limit"] = arguments.seconds("time_limit", options.time_limit, positive=True)
    if options.max_attempts is not None:
        value = options.max_attempts
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError("max_attempts", f"must be an integer ≥ 1, got {value!r:.80}")
        out["max_attempts"] = value
    if options.retry_backoff is not None:
        out["retry_backoff"] = arguments.seconds(
            "retry_backoff", options.retry_backoff, positive=True
        )
    if options.cancel_on_timeout is not None:
        if not isinstance(options.cancel_on_timeout, bool):
            raise ConfigurationError(
                "cancel_on_timeout", f"must be true or false, got {options.cancel_on_timeout!r:.80}"
            )
        if options.cancel_on_timeout:
            out["cancel_on_timeout"] = True
    return out


def with_cancel_on_timeout(options: TaskOptions | None, cancel: object) -> TaskOptions | None:
    """The options of a call given ``cancel_on_timeout=`` (``None``: the options as they are)."""
    if cancel is None:
        return options
    if not isinstance(cancel, bool):
        raise ConfigurationError("cancel_on_timeout", f"must be true or false, got {cancel!r:.80}")
    if options is None:
        return TaskOptions(cancel_on_timeout=cancel)
    if not isinstance(options, TaskOptions):
        return options  # option_headers names the bad argument
    return dataclasses.replace(options, cancel_on_timeout=cancel)


@dataclass(frozen=True, slots=True)
class Message:
    """One message for :meth:`Client.enqueue_many`."""

    task: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 5
    tenant: str = ""
    delay: float = 0.0
    options: TaskOptions | None = None


def shared_key() -> str:
    """A fresh reply key that every caller of a unique message may wait on."""
    return SHARED_KEY_PREFIX + uuid.uuid4().hex


def is_shared(reply_key: str) -> bool:
    """Whether a reply is read by several callers (left in place) or taken by its one caller."""
    return reply_key.startswith(SHARED_KEY_PREFIX)


def check_unique(unique_key: object, unique_for: object) -> tuple[str | None, float]:
    """The unique key (``None``: not unique) and its window in seconds, checked."""
    window = arguments.seconds("unique_for", unique_for, positive=False)
    if unique_key is None:
        if window:
            raise ConfigurationError("unique_for", "needs a unique_key")
        return None, 0.0
    if (
        not isinstance(unique_key, str)
        or not unique_key
        or len(unique_key) > UNIQUE_KEY_MAX
        or "\x00" in unique_key
    ):
        raise ConfigurationError(
            "unique_key",
            f"must be a non-empty string of at most {UNIQUE_KEY_MAX} characters, "
            f"got {unique_key!r:.80}",
        )
    return unique_key, window


def deadline_left(params: dict[str, Any], since: float) -> dict[str, Any]:
    """``params`` with the deadline as what is left of it now, counted from ``since`` (a
    ``time.monotonic()`` instant: a call's start). The server adds it to its ``now()``: time
    spent before the statement goes out (waiting for a pooled connection, a retry on a fresh
    one) must not be added to the caller's, or a worker could start a call whose caller has
    already given up. What is left may be negative: the message is then dead-lettered at its
    first claim."""
    if params["deadline"] is None:
        return params
    return {**params, "deadline": params["deadline"] - (time.monotonic() - since)}


def message_params(
    settings: ClientSettings,
    task: object,
    args: object,
    kwargs: object,
    queue: object,
    priority: object,
    tenant: object,
    delay: object,
    reply_key: str | None = None,
    deadline: float | None = None,
    *,
    options: TaskOptions | None = None,
    unique_key: object = None,
    unique_for: object = 0.0,
    own_transaction: bool = False,
) -> dict[str, Any]:
    """The parameters of one message's statement (:func:`pgqueue.store.calls.enqueue`), every
    argument checked.

    ``own_transaction``: the statement runs in the caller's transaction, whose durability must
    not change (a call's message otherwise commits asynchronously, see queries.sql).
    """
    arguments.check_message(task, queue, priority, tenant)
    after = arguments.seconds("delay", delay, positive=False)
    assert isinstance(tenant, str)
    headers = option_headers(options)
    key, window = check_unique(unique_key, unique_for)
    return {
        "queue": queue,
        "task_name": task,
        "payload": arguments.payload(
            args, kwargs, tenant, settings.max_payload_bytes, headers=headers
        ),
        "reply_key": reply_key,
        "priority": priority,
        "tenant": tenant,
        "delay": after,
        "deadline": deadline,
        "notify": settings.notify,
        "async_commit": (
            reply_key is not None and settings.async_call_commit and not own_transaction
        ),
        "unique_key": key,
        "unique_for": window,
    }


def batch_params(settings: ClientSettings, messages: Iterable[Message]) -> dict[str, Any]:
    """The parameters of ``enqueue_many`` (parallel arrays), every message checked."""
    checked = [
        message_params(
            settings,
            m.task,
            m.args,
            m.kwargs,
            m.queue,
            m.priority,
            m.tenant,
            m.delay,
            options=m.options,
        )
        for m in messages
    ]
    return {
        "queues": [p["queue"] for p in checked],
        "task_names": [p["task_name"] for p in checked],
        "payloads": [p["payload"] for p in checked],
        "reply_keys": [None] * len(checked),
        "priorities": [p["priority"] for p in checked],
        "tenants": [p["tenant"] for p in checked],
        "delays": [p["delay"] for p in checked],
        "notify": settings.notify,
    }


def execute_on(conn: psycopg.Connection[Any], statement: Statement) -> list[dict[str, Any]]:
    """Run a statement on the caller's connection, in whatever transaction it has open.

    Never prepared on the server (``prepare=False``), so a connection through a transaction
    pooler (PgBouncer) works whatever its ``prepare_threshold``; rows come as dicts whatever
    the connection's row factory.
    """
    if not isinstance(conn, psycopg.Connection):
        raise ConfigurationError(
            "conn", f"must be a psycopg (3) Connection, got {type(conn).__name__}"
        )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(*statement, prepare=False)
        return cur.fetchall()
