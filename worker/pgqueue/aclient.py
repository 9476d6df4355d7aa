"""The producer side for asyncio: :class:`AsyncClient`, the sync client on psycopg's async API.

``await client.call(...)`` enqueues with a reply key of the client's private reply channel and
the caller's deadline, then awaits the reply: the client's one LISTEN session (a task on the
event loop, :mod:`pgqueue.alistening`) hands it over from the NOTIFY, or takes it from the table
in its safety-net sweep; while that session is away, and always with ``pooled=True`` (no
LISTEN through a transaction pooler), each call polls on the sync client's fast-then-capped
schedule. Thousands of calls may wait at once on one event loop: they share the pool for their
inserts and the one listener for their replies.

Arguments, SQL, reply decoding and DSN handling are the sync client's (:mod:`pgqueue.producing`,
:mod:`pgqueue.arguments`, :mod:`pgqueue.replies`, :mod:`pgqueue.db`), and so
are the promises: ``call`` never raises (a bad argument is an ``enqueue_error`` naming it) and
returns within ``timeout`` + 0.25 s whatever the network does, every wait being bounded by an
``asyncio`` timeout that gives up the connection it cancels (:mod:`pgqueue.adb`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import arguments, cancelling, pausing, store
from pgqueue.aclientpool import AsyncConn
from pgqueue.alistening import AsyncReplyListener
from pgqueue.areplywaiting import AsyncReplyWaiting, Polls
from pgqueue.cancelling import Cancellation
from pgqueue.client import CALL_GRACE, observed, unexpected
from pgqueue.errors import ConfigurationError, EnqueueError, PgQueueError
from pgqueue.producing import deadline_left, message_params, with_cancel_on_timeout
from pgqueue.replies import CallResult
from pgqueue.store import calls

log = logging.getLogger(__name__)


class AsyncClient(AsyncReplyWaiting):
    """Enqueue tasks and call them from asyncio; share one per event loop.

    Use ``async with AsyncClient(dsn) as client:`` (or ``await client.close()``); connections
    open on first use. A FastAPI app keeps one in its lifespan (``examples/fastapi/``).
    """

    @property
    def listener(self) -> AsyncReplyListener | None:
        """The reply listener (None with ``pooled=True``): its counters help debugging."""
        return self._listener

    async def open(self) -> AsyncClient:
        """Open the pool and start the reply listener (done on first use otherwise)."""
        if self._closed:
            raise EnqueueError("the AsyncClient is closed")
        if self._opened:
            return self
        async with self._open_lock:
            if not self._opened:
                await self._pool.open(wait=False)
                # LISTEN does not survive a transaction pooler; or polls cost less (reply_wait)
                if not self.settings.pooled and self.settings.reply_wait == "listen":
                    self._listener = AsyncReplyListener(
                        self.settings.dsn, self.settings, self._application_name
                    )
                    self._listener.start()
                self._opened = True
        return self

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            await self._listener.close()
        if self._opened:
            await self._pool.close(timeout=2)

    async def __aenter__(self) -> AsyncClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- pausing queues (pgqueue.pausing; rare verbs, so on a short connection in a thread) ----

    async def pause_queue(
        self, queue: str, *, reason: str = "", by: str | None = None
    ) -> pausing.QueuePause:
        """As :meth:`pgqueue.Client.pause_queue`."""
        s = self.settings
        return await pausing.in_thread(
            s.dsn,
            "pause_queue",
            pausing.pause_queue,
            queue,
            by=by or pausing.who(),
            reason=reason,
            pooled=s.pooled,
            connect_timeout=s.connect_timeout,
        )

    async def resume_queue(self, queue: str, *, by: str | None = None) -> pausing.QueuePause:
        """As :meth:`pgqueue.Client.resume_queue`."""
        s = self.settings
        return await pausing.in_thread(
            s.dsn,
            "resume_queue",
            pausing.resume_queue,
            queue,
            by=by or pausing.who(),
            pooled=s.pooled,
            connect_timeout=s.connect_timeout,
        )

    # -- fire and forget -------------------------------------------------------------------

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    async def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int = 5,
        tenant: str = "",
        delay: float = 0.0,
    ) -> int:
        """Put one message on a queue; returns its msg_id.

        Raises :class:`~pgqueue.errors.ConfigurationError` naming a bad argument, and
        :class:`~pgqueue.errors.EnqueueError` when the database did not take the message.
        """
        params = message_params(self.settings, task, args, kwargs, queue, priority, tenant, delay)
        await self.open()
        return await self._insert(params)

    async def _insert(self, params: dict[str, Any], since: float | None = None) -> int:
        """The message's msg_id (a plain enqueue: this client has no unique_key). Its deadline
        counts from ``since`` (default: now), whenever the statement goes out."""
        since = time.monotonic() if since is None else since

        async def insert(conn: AsyncConn) -> int:
            statement = calls.enqueue(deadline_left(params, since))
            row = await store.aone(conn, statement)
            assert row is not None
            return int(row["msg_id"])

        try:
            return await self._run(insert, "enqueue")
        except (psycopg.Error, PoolTimeout) as exc:
            raise EnqueueError(
                self._scrub(f"enqueue of {params['task_name']!r} failed: {exc}")
            ) from None

    # -- request-reply ---------------------------------------------------------------------

    # Public verbs spell their keyword parameters out, each its own (Client, AsyncClient, the
    # dispatchers and Task share the names on purpose): a signature is what help() and the API
    # reference show, so a shared **kwargs would hide it.
    async def call(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        timeout: float | None = None,  # noqa: ASYNC109 - the sync call()'s spelling, kept
        priority: int = 5,
        tenant: str = "",
        cancel_on_timeout: bool | None = None,
    ) -> CallResult:
        """Run a task and await its reply; never raises, whatever the arguments or the network.

        Returns within ``timeout`` + 0.25 s. A bad argument is an ``enqueue_error`` result whose
        error names it. Cancelling the awaiting task cancels the wait (not the task's run: that
        is :meth:`cancel`, or ``cancel_on_timeout=True``, which has the worker kill the run when
        the timeout passes while it runs).
        """
        started = time.monotonic()
        try:
            result = await self._call(
                task, args, kwargs, queue, timeout, priority, tenant, started, cancel_on_timeout
            )
        except Exception as exc:
            result = unexpected(log, self._scrub, exc)
        return observed(task, started, result)

    # Mirrors pgqueue.replywaiting's ReplyWaiting._call (psycopg's sync API): the same steps on
    # the event loop; a change to one is a change to both.
    async def _call(
        self,
        task: object,
        args: object,
        kwargs: object,
        queue: object,
        timeout: object,  # noqa: ASYNC109
        priority: object,
        tenant: object,
        started: float,
        cancel_on_timeout: object = None,
    ) -> CallResult:
        try:
            wait = (
                self.settings.default_timeout
                if timeout is None
                else arguments.seconds("timeout", timeout, positive=True)
            )
            await self.open()
        except PgQueueError as exc:
            return CallResult.failure("", "enqueue_error", str(exc))
        listener = self._listener
        # The listener's prefix routes the reply's NOTIFY to this client alone.
        reply_key = listener.new_key() if listener else uuid.uuid4().hex
        try:
            params = message_params(
                self.settings,
                task,
                args,
                kwargs,
                queue,
                priority,
                tenant,
                0.0,
                reply_key,
                wait,
                options=with_cancel_on_timeout(None, cancel_on_timeout),
            )
        except ConfigurationError as exc:
            return CallResult.failure(reply_key, "enqueue_error", str(exc))
        deadline = started + wait
        # asyncio's clock may not be time.monotonic (uvloop): its deadlines are converted.
        loop = asyncio.get_running_loop()
        hard_stop = loop.time() + (deadline + CALL_GRACE - time.monotonic())
        waiter = listener.register(reply_key) if listener else None
        try:
            try:
                async with asyncio.timeout_at(hard_stop):
                    await self._insert(params, since=started)
            except TimeoutError:
                return CallResult.failure(
                    reply_key, "enqueue_error", f"no answer from the database within {wait:g}s"
                )
            except PgQueueError as exc:
                return CallResult.failure(reply_key, "enqueue_error", str(exc))
            state = Polls()
            try:
                async with asyncio.timeout_at(hard_stop):
                    return await self._wait(
                        reply_key, deadline, wait, waiter, state, (str(queue), str(task))
                    )
            except TimeoutError:
                # A poll in flight at the deadline: its connection was given up.
                return state.timed_out(reply_key, wait, "; last poll got no answer")
        finally:
            if listener is not None:
                listener.unregister(reply_key)

    async def wait_for_reply(self, reply_key: str, timeout: float) -> CallResult:  # noqa: ASYNC109
        """Await the reply stored under a reply key (for messages another process enqueued).

        A key made by another client is not notified on this client's channel: the listener's
        sweep (every poll_max) or this call's own polls find it. Never raises: a bad key or
        timeout is an ``enqueue_error`` result naming it.
        """
        try:
            key = arguments.check_reply_key(reply_key)
            wait = arguments.seconds("timeout", timeout, positive=True)
            await self.open()
        except PgQueueError as exc:
            return CallResult.failure(str(reply_key)[:255], "enqueue_error", str(exc))
        started = time.monotonic()
        listener = self._listener
        waiter = listener.register(key) if listener else None
        state = Polls()
        hard_stop = asyncio.get_running_loop().time() + wait + CALL_GRACE
        try:
            async with asyncio.timeout_at(hard_stop):
                return await self._wait(key, started + wait, wait, waiter, state)
        except TimeoutError:
            return state.timed_out(key, wait, "; last poll got no answer")
        except Exception as exc:
            return CallResult.failure(key, "enqueue_error", self._scrub(f"{exc}"))
        finally:
            if listener is not None:
                listener.unregister(key)

    async def cancel(self, target: int | str, *, by: str | None = None) -> Cancellation:
        """Cancel a message by msg_id (int) or reply key (str): see :meth:`Client.cancel`.

        Raises :class:`~pgqueue.errors.UnknownMessage` naming an unknown id or key, and
        :class:`~pgqueue.errors.CancelError` when the database did not answer.
        """
        await self.open()
        return await cancelling.on_async_pool(
            lambda op: self._run(op, "cancel"), self._scrub, target, by
        )
