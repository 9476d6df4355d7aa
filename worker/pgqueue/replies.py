"""The result of a blocking call, and how a stored reply row becomes one.

``call()`` never raises for transport or task errors: every outcome is a :class:`CallResult` whose
``kind`` tells the failures apart, so a caller can decide to retry (a timeout, an enqueue error)
or not (a task error, a call someone cancelled) without parsing messages. The reply status enum
is shared with the writer.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Literal

CallKind = Literal["ok", "task_error", "timeout", "enqueue_error", "malformed_reply", "cancelled"]


class ReplyStatus(enum.StrEnum):
    """Values of ``pgqueue.result.status`` (the Postgres enum of the same name)."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the call was cancelled (pgqueue.cancelling), migration 0010


@dataclass(frozen=True, slots=True)
class CallResult:
    """Outcome of ``call()``: ``ok`` with ``value``, or a failure ``kind`` with ``error``."""

    ok: bool
    value: Any
    error: str
    kind: CallKind
    reply_key: str

    @classmethod
    def success(cls, reply_key: str, value: Any) -> CallResult:
        return cls(ok=True, value=value, error="", kind="ok", reply_key=reply_key)

    @classmethod
    def failure(cls, reply_key: str, kind: CallKind, error: str) -> CallResult:
        return cls(ok=False, value=None, error=error, kind=kind, reply_key=reply_key)

    def to_json(self) -> str:
        """The result as one JSON object (what ``pgqueue call`` prints)."""
        return json.dumps(
            {
                "ok": self.ok,
                "value": self.value,
                "error": self.error,
                "kind": self.kind,
                "reply_key": self.reply_key,
            },
            default=str,
        )


def from_row(reply_key: str, status: object, result: object, error: object) -> CallResult:
    """Turn a taken reply row into a result; anything off-contract is a malformed reply."""
    if status == ReplyStatus.COMPLETED:
        return CallResult.success(reply_key, result)
    if status == ReplyStatus.FAILED and isinstance(error, str) and error:
        return CallResult.failure(reply_key, "task_error", error)
    if status == ReplyStatus.CANCELLED:
        return CallResult.failure(reply_key, "cancelled", str(error or "cancelled"))
    return CallResult.failure(
        reply_key,
        "malformed_reply",
        f"reply row has status {status!r} and error {error!r}; expected completed, or failed "
        "with a message",
    )
