"""Deadlines on the operator's own database calls, so a hung Postgres cannot hang a handler.

The connections themselves are bounded (``pgqueue.db.connect``: connect timeout, keepalives,
``tcp_user_timeout``, a statement timeout), but a handler must return even when the network
stalls in a way those miss. :class:`Deadlines` runs each call in a daemon thread and stops
waiting at the deadline; the handler then reports the database as unavailable and retries later.
At most one call per key (a PgQueueWorker and a purpose) is ever left waiting: while it has not
returned, the next call for that key fails at once instead of stacking another stuck thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from pgqueue_operator.errors import DatabaseError

T = TypeVar("T")


class Deadlines:
    """Runs calls with a deadline, one outstanding call per key."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._busy: dict[Hashable, threading.Thread] = {}

    def run(self, key: Hashable, what: str, call: Callable[[], T]) -> T:
        """``call()``'s value or exception; :class:`DatabaseError` when it misses the deadline."""
        with self._lock:
            stuck = self._busy.get(key)
            if stuck is not None and stuck.is_alive():
                raise DatabaseError(
                    f"{what}: the previous attempt has not returned yet (database unresponsive)"
                )
            box: dict[str, Any] = {}
            done = threading.Event()

            def target() -> None:
                try:
                    box["value"] = call()
                except BaseException as exc:  # handed to the caller's thread below
                    box["error"] = exc
                finally:
                    done.set()

            thread = threading.Thread(target=target, name=f"pgqueue-db {what}", daemon=True)
            self._busy[key] = thread
        thread.start()
        if not done.wait(self.timeout):
            raise DatabaseError(f"{what}: no answer within {self.timeout:g} s")
        with self._lock:
            if self._busy.get(key) is thread:
                del self._busy[key]
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value
