"""The client's enqueue path: a message's parameters checked, its row inserted.

On the client's pool, or with ``conn=`` on the caller's own connection, in the caller's
transaction (never retried there: it may have run). A ``unique_key`` held by a waiting or running
message returns the holder's row instead of a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import producing, sqlfiles
from pgqueue.clientpool import ClientConnections, Conn
from pgqueue.errors import EnqueueError
from pgqueue.producing import Message, TaskOptions


class Enqueuing(ClientConnections):
    """``enqueue`` and ``enqueue_many``, and the insert every enqueue, submit and call makes."""

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int = 5,
        tenant: str = "",
        delay: float = 0.0,
        options: TaskOptions | None = None,
        unique_key: str | None = None,
        unique_for: float = 0.0,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        """Put one message on a queue; returns its msg_id.

        ``conn``: the caller's psycopg connection; the message joins its open transaction (or
        commits at once in autocommit). ``unique_key``: while a message with that key waits or
        runs (and ``unique_for`` seconds from its enqueue), no other is queued: this returns the
        holder's msg_id. ``options``: per-task limits carried by the message.

        Raises :class:`~pgqueue.errors.ConfigurationError` naming a bad argument, and
        :class:`~pgqueue.errors.EnqueueError` when the database did not take the message.
        """
        params = self._params(
            task,
            args,
            kwargs,
            queue,
            priority,
            tenant,
            delay,
            None,
            None,
            options=options,
            unique_key=unique_key,
            unique_for=unique_for,
            own_transaction=conn is not None,
        )
        return int(self._insert(params, None, conn)["msg_id"])

    def enqueue_many(
        self, messages: Iterable[Message], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        """Put a batch of messages on their queues in one statement; returns their msg_ids.

        ``conn``: the caller's psycopg connection, as for :meth:`enqueue`.
        """
        batch = list(messages)
        params = producing.batch_params(self.settings, batch)
        if not batch:
            return []
        query = sqlfiles.query("enqueue_many")

        def insert(conn: Conn) -> list[int]:
            return [int(r["msg_id"]) for r in conn.execute(query, params).fetchall()]

        try:
            if conn is not None:
                return [int(r["msg_id"]) for r in producing.execute_on(conn, query, params)]
            return self._run(insert, None, "enqueue_many")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(self._scrub(f"enqueue_many failed: {exc}")) from None

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
        self, params: dict[str, Any], until: float | None, own: psycopg.Connection[Any] | None
    ) -> dict[str, Any]:
        """The message's row (msg_id; with a unique key also reply_key and created)."""
        query = producing.statement(params)

        def insert(conn: Conn) -> dict[str, Any]:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return row

        try:
            if own is not None:
                # The caller's transaction: never retried here (it may have run), never pooled.
                return producing.execute_on(own, query, params)[0]
            return self._run(insert, until, "enqueue")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(
                self._scrub(f"enqueue of {params['task_name']!r} failed: {exc}")
            ) from None
