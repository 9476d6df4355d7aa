"""What happens to a claimed message: the pure decision table of architecture §3.4–3.9.

The supervisor asks two questions of this module: may this message start at all (drop branches),
and, once it ran, what do we write (ack with a reply, retry with backoff, or dead-letter). Keeping
the answers pure keeps the rules readable in one place and testable without a database.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgqueue import limits
from pgqueue.replies import ReplyStatus


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed message as the claim statement returned it."""

    msg_id: int
    queue: str
    task_name: str
    payload: Any
    reply_key: str | None
    priority: int
    tenant: str
    read_ct: int
    waited: float  # seconds from enqueue to the claim (database clock)
    deadline_in: float | None
    claimed_at: float = 0.0  # monotonic clock of the worker when the claim returned
    claim_token: int = 0  # the claim's fence (with msg_id): no re-claim repeats it
    # The row's enqueue time: with msg_id, what a crash cannot hand to another message (the
    # renew statement takes back a lost claim only of the very row it was).
    enqueued_at: datetime | None = None
    # Its per-task options (payload headers, see pgqueue.limits) and the ones it got wrong,
    # which are ignored: the worker's settings apply to those.
    requested: limits.Requested = limits.DEFAULT
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Work:
    """A message that passed the checks: what the child process runs."""

    args: list[Any]
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a child process reported for one run."""

    ok: bool
    result_json: str | None  # the JSON text of the return value, when ok
    error: str  # "ExcType: message" when not ok
    duration: float
    started: float = 0.0  # monotonic clock when the child began the run (0: unknown)


@dataclass(frozen=True, slots=True)
class Ack:
    status: ReplyStatus
    result_json: str | None
    error: str
    outcome: str  # metric label


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    # The reply a waiting caller gets: failed, or cancelled (see pgqueue.cancelling).
    status: ReplyStatus = ReplyStatus.FAILED


Action = Ack | Retry | DeadLetter

# Bounds on what a message may carry. A reply key is an index key of the result table (Postgres
# indexes up to ~2.7 kB) and a NOTIFY payload (< 8000 bytes); a client's own keys are ~60 bytes.
MAX_REPLY_KEY_BYTES = 1024
# A task name is a metric label and a log field: bounded, printable.
MAX_TASK_NAME_CHARS = 255
UNKNOWN_TASK_LABEL = "<unknown>"

_TRUNCATED = "… [truncated: {n} more bytes]"


def storable(text: str, max_bytes: int) -> str:
    """The text made storable in a Postgres text column without losing what it says.

    A NUL (which Postgres text cannot hold) becomes the escape ``\\x00``, a lone surrogate
    (which UTF-8 cannot encode) becomes its ``\\udXXX`` escape, and text over ``max_bytes`` of
    UTF-8 is cut at a character boundary with a marker saying how much was cut.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return data.decode()
    cut = data[: max(0, max_bytes - 48)].decode("utf-8", "ignore")
    return cut + _TRUNCATED.format(n=len(data) - len(cut.encode()))


def error_text(exc: BaseException) -> str:
    """``ExcType: message`` of a task's exception, even when its ``__str__`` raises."""
    try:
        message = str(exc)
    except Exception as inner:  # a task's __str__ may do anything
        message = f"<unprintable message: {type(inner).__name__}>"
    return f"{type(exc).__name__}: {message}"


def deadline_passed(late_by: float) -> DeadLetter:
    """The one dead letter of a call whose caller gave up before its task could start."""
    return DeadLetter(
        f"deadline passed: the caller stopped waiting {max(0.0, late_by):.3f}s before the task "
        "could start"
    )


def metric_task(task_name: str, known_tasks: set[str] | frozenset[str]) -> str:
    """The task label of a metric: a name this worker knows, else one shared value, so bogus
    names cannot create unbounded series."""
    return task_name if task_name in known_tasks else UNKNOWN_TASK_LABEL


def _bad_task_name(name: str) -> str | None:
    if len(name) > MAX_TASK_NAME_CHARS:
        return f"is {len(name)} characters, over the limit of {MAX_TASK_NAME_CHARS}"
    if any(not ch.isprintable() for ch in name):
        return "contains control characters"
    return None


def admit(
    msg: Claimed, known_tasks: set[str] | frozenset[str], max_attempts: int
) -> Work | DeadLetter:
    """The drop branches (§3.7, §3.9): malformed, unknown task, too many attempts, deadline.

    ``max_attempts`` is the worker's: the message's own, when it asks for fewer, applies.
    """
    payload = msg.payload
    if not isinstance(payload, dict):
        return DeadLetter(
            f"malformed payload: expected a JSON object, got {type(payload).__name__}"
        )
    args = payload.get("args", [])
    kwargs = payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return DeadLetter("malformed payload: 'args' must be a list and 'kwargs' an object")
    bad = _bad_task_name(msg.task_name)
    if bad is not None:
        return DeadLetter(f"invalid task name {msg.task_name[:64]!r}…: {bad}")
    if msg.reply_key is not None and len(msg.reply_key.encode("utf-8", "replace")) > (
        MAX_REPLY_KEY_BYTES
    ):
        return DeadLetter(
            f"invalid reply key: {len(msg.reply_key.encode('utf-8', 'replace'))} bytes, over the "
            f"limit of {MAX_REPLY_KEY_BYTES}; no reply can be stored or notified for it"
        )
    if msg.task_name not in known_tasks:
        return DeadLetter(f"unknown task {msg.task_name!r} on queue {msg.queue!r}")
    max_attempts = limits.max_attempts(msg.requested, max_attempts)
    if msg.read_ct > max_attempts:
        return DeadLetter(
            f"max attempts exceeded: claimed {msg.read_ct} times (max_attempts={max_attempts}); "
            "its workers died or lost the lease each time"
        )
    if msg.reply_key is not None and msg.deadline_in is not None and msg.deadline_in <= 0:
        return deadline_passed(-msg.deadline_in)
    return Work(args=args, kwargs=kwargs)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half: attempt 1 → about base."""
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(raw / 2 + random.uniform(0, raw / 2))  # noqa: S311 - jitter, not crypto


def settle(
    msg: Claimed,
    run: RunResult,
    *,
    max_attempts: int,
    max_result_bytes: int,
    retry_backoff: float,
    retry_backoff_max: float,
    max_error_bytes: int = 65536,
) -> Action:
    """What to write after a run (§3.4–3.6, §3.8); every text is made :func:`storable`.

    ``max_attempts`` and ``retry_backoff`` are the worker's; the message's own options apply
    below its ceiling (:mod:`pgqueue.limits`).
    """
    request_reply = msg.reply_key is not None
    error = storable(run.error, max_error_bytes)
    if run.ok:
        if not request_reply:
            return Ack(ReplyStatus.COMPLETED, None, "", "completed")
        text = run.result_json if run.result_json is not None else "null"
        size = len(text.encode())
        if size > max_result_bytes:
            return Ack(
                ReplyStatus.FAILED,
                None,
                f"reply not stored: result is {size} bytes, over the limit of {max_result_bytes}",
                "reply_failed",
            )
        return Ack(ReplyStatus.COMPLETED, text, "", "completed")
    if request_reply:
        # One attempt: a re-run could spend real money twice; the caller decides.
        return Ack(ReplyStatus.FAILED, None, error, "failed")
    if msg.read_ct < limits.max_attempts(msg.requested, max_attempts):
        base = limits.retry_backoff(msg.requested, retry_backoff)
        return Retry(backoff(msg.read_ct, base, retry_backoff_max), error)
    return DeadLetter(f"failed after {msg.read_ct} attempts: {error}")


def encode_result(value: Any) -> tuple[str | None, str]:
    """JSON text of a return value, or the reason it has none."""
    try:
        return json.dumps(value, allow_nan=False), ""
    except Exception as exc:  # a recursion, a __str__ or default that raises: never the worker's
        return None, f"reply not stored: result is not JSON-serialisable: {error_text(exc)}"
