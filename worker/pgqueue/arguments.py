"""What a caller passes to ``enqueue`` and ``call``, checked before anything reaches Postgres.

Every check raises :class:`~pgqueue.errors.ConfigurationError` naming the argument (``task``,
``queue``, ``priority``, ``delay``, ``timeout``, ``tenant``, ``args``, ``kwargs``, ``payload``,
``reply_key``), so ``enqueue()`` raises a typed error and ``call()`` turns it into an
``enqueue_error`` result: no argument value, however odd, gets further or raises anything else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pgqueue.errors import ConfigurationError
from pgqueue.settings import check_queue_name
from pgqueue.tasks import TASK_NAME, check_task_name

REPLY_KEY = re.compile(r"[A-Za-z0-9_.:@/-]{1,255}")
TENANT_MAX = 255
# An escaped NUL, not an escaped backslash followed by "u0000".
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def valid_task(name: str) -> bool:
    return TASK_NAME.fullmatch(name) is not None


def check_message(task: object, queue: object, priority: object, tenant: object) -> None:
    check_task_name(task, "task")
    if not isinstance(queue, str):
        raise ConfigurationError("queue", f"must be a string, got {_shown(queue)}")
    try:
        check_queue_name(queue)
    except ValueError as exc:
        raise ConfigurationError("queue", str(exc)) from None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise ConfigurationError("priority", f"must be an integer 1..10, got {_shown(priority)}")
    if not isinstance(tenant, str) or len(tenant) > TENANT_MAX or "\x00" in tenant:
        raise ConfigurationError(
            "tenant", f"must be a string of at most {TENANT_MAX} characters, got {_shown(tenant)}"
        )


def seconds(field: str, value: object, *, positive: bool) -> float:
    """A finite number of seconds (> 0 when ``positive``, else ≥ 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(field, f"must be a number of seconds, got {_shown(value)}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else "≥ 0"
        raise ConfigurationError(field, f"must be a finite number of seconds {bound}, got {value}")
    return number


def check_reply_key(reply_key: object) -> str:
    if not isinstance(reply_key, str) or not REPLY_KEY.fullmatch(reply_key):
        raise ConfigurationError(
            "reply_key",
            f"invalid reply key {_shown(reply_key)}: use letters, digits and _ . : @ / - "
            "(1-255 characters)",
        )
    return reply_key


def payload(
    args: object,
    kwargs: object,
    tenant: str,
    max_bytes: int,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """The message payload as JSON text, at most ``max_bytes`` bytes; ``headers`` carry the
    per-task options (already checked, see :mod:`pgqueue.producing`)."""
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigurationError("args", f"must be a list or tuple, got {_shown(args)}")
    if kwargs is not None and not (
        isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)
    ):
        raise ConfigurationError("kwargs", f"must be a dict with str keys, got {_shown(kwargs)}")
    body: dict[str, Any] = {
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "headers": dict(headers or {}),
        "tenant": tenant,
    }
    try:
        text = json.dumps(body, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigurationError(
            "args", f"arguments must be JSON-serialisable: {str(exc)[:200]}"
        ) from None
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            "args", "arguments must be valid Unicode (a lone surrogate cannot be stored)"
        ) from None
    if "\\u0000" in text and _NUL.search(text):  # the substring test first: no regex per call
        # jsonb cannot store a NUL character: the insert would fail with a DataError.
        raise ConfigurationError("args", "arguments must not contain NUL (\\x00) characters")
    if len(encoded) > max_bytes:
        raise ConfigurationError(
            "payload",
            f"arguments are {len(encoded)} bytes as JSON, over max_payload_bytes={max_bytes} "
            "(pass a reference to large data instead, or raise the cap)",
        )
    return text
