"""The client's insert path: a message's parameters checked, its row inserted.

On the client's pool, or with ``conn=`` on the caller's own connection, in the caller's
transaction (never retried there: it may have run). A ``unique_key`` held by a waiting or running
message returns the holder's row instead of a new one; the reply key to wait on is then the
holder's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import producing, store
from pgqueue.clientpool import ClientConnections, Conn
from pgqueue.errors import EnqueueError
from pgqueue.store import calls


class Enqueuing(ClientConnections):
    """The insert every enqueue, submit and call makes, and the reply key it carries."""

    @staticmethod
    def _attached_key(row: Mapping[str, Any], key: str, unique_key: object) -> str:
        """The reply key to wait on: ours, or that of the message holding the unique key."""
        if row.get("created", True):
            return key
        holder = row.get("reply_key")
        if holder is None:
            raise EnqueueError(
                f"unique key {unique_key!r:.80} is held by message {row['msg_id']}, which was "
                "enqueued without a reply (enqueue, not submit or call): no reply to attach to"
            )
        return str(holder)

    def _reply_key(self, *, shared: bool) -> str:
        if shared:
            return producing.shared_key()
        listener = self._reply_listener()
        # The listener's prefix routes the reply's NOTIFY to this process alone.
        return listener.new_key() if listener else uuid.uuid4().hex

    def _params(self, *args: Any, **extra: Any) -> dict[str, Any]:
        """The enqueue statement's parameters, every argument checked (errors name it): the
        positional arguments of :func:`pgqueue.producing.message_params` after the settings."""
        return producing.message_params(self.settings, *args, **extra)

    def _insert(
        self,
        params: dict[str, Any],
        until: float | None,
        own: psycopg.Connection[Any] | None,
        since: float | None = None,
    ) -> dict[str, Any]:
        """The message's row (msg_id; with a unique key also reply_key and created). Its
        deadline counts from ``since`` (default: now), whenever the statement goes out."""
        since = time.monotonic() if since is None else since

        def insert(conn: Conn) -> dict[str, Any]:
            row = store.one(conn, calls.enqueue(producing.deadline_left(params, since)))
            assert row is not None
            return row

        try:
            if own is not None:
                # The caller's transaction: never retried here (it may have run), never pooled.
                statement = calls.enqueue(producing.deadline_left(params, since))
                return producing.execute_on(own, statement)[0]
            return self._run(insert, until, "enqueue")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(
                self._scrub(f"enqueue of {params['task_name']!r} failed: {exc}")
            ) from None
