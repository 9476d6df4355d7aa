"""A call's path: enqueue with a reply key, then poll or wake on the reply's NOTIFY, until the
reply or the deadline.

Polls with a fast-then-capped backoff clamped to the deadline, timed from this client's recent
replies (:mod:`pgqueue.replypacing`), taking a pooled connection only for each poll; with a live
listener (:mod:`pgqueue.listening`) it polls when woken and every ``poll_max`` as the safety net,
and a small reply comes in the NOTIFY itself. Polling stays the correctness path: a lost
notification costs latency, never a result.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import arguments, db, producing, replypacing, store
from pgqueue.clientpool import Conn
from pgqueue.enqueuing import Enqueuing
from pgqueue.errors import ConfigurationError, PgQueueError
from pgqueue.listening import Waiter
from pgqueue.replies import CallResult, from_row
from pgqueue.store import calls

# One logger for the client, whichever part of it speaks.
log = logging.getLogger("pgqueue.client")

# How late past its timeout call() may return: a statement still in flight at the deadline gets
# this long to answer before its connection is given up (then the rest is scheduling).
CALL_GRACE = 0.1


class ReplyWaiting(Enqueuing):
    """A call's path under :meth:`pgqueue.Client.call`: enqueue with a reply key, then take the
    reply row or wait for it."""

    # Mirrored in pgqueue.aclient._call (psycopg's async API): the same steps, sync here; a
    # change to one is a change to both (a shared helper would have to be both sync and async).
    def _call(
        self,
        task: object,
        args: object,
        kwargs: object,
        queue: object,
        timeout: object,
        priority: object,
        tenant: object,
        started: float,
        extra: dict[str, Any],
    ) -> CallResult:
        unique = extra["unique_key"] is not None
        reply_key = self._reply_key(shared=unique)
        try:
            wait = (
                self.settings.default_timeout
                if timeout is None
                else arguments.seconds("timeout", timeout, positive=True)
            )
            params = self._params(
                task, args, kwargs, queue, priority, tenant, 0.0, reply_key, wait, **extra
            )
        except ConfigurationError as exc:
            return CallResult.failure(reply_key, "enqueue_error", str(exc))
        deadline = started + wait
        listener = self._reply_listener()
        # A private key is registered before its message exists; a unique call's key is known
        # only once the statement says which message holds it, so it polls first.
        waiter = listener.register(reply_key) if listener and not unique else None
        try:
            with db.deadline(deadline + CALL_GRACE):
                try:
                    row = self._insert(params, deadline, None, since=started)
                    reply_key = self._attached_key(row, reply_key, extra["unique_key"])
                except PgQueueError as exc:
                    return CallResult.failure(reply_key, "enqueue_error", str(exc))
                if unique and listener:
                    waiter = listener.register(reply_key)
                # A unique call may find its reply stored already: it polls at once, untimed.
                paced = None if unique else (str(params["queue"]), str(params["task_name"]))
                return self._wait(reply_key, deadline, wait, waiter, poll_first=unique, paced=paced)
        finally:
            if listener and waiter is not None:
                listener.unregister(reply_key, waiter)

    def _take(self, reply_key: str, deadline: float) -> CallResult | None:
        # A shared reply (a unique call's) is read by every attached caller: never deleted here.
        shared = producing.is_shared(reply_key)
        statement = calls.peek_reply(reply_key) if shared else calls.take_reply(reply_key)

        def take(conn: Conn) -> dict[str, Any] | None:
            return store.one(conn, statement)

        row = self._run(take, deadline + CALL_GRACE, "take_reply")
        if row is None:
            return None
        return from_row(reply_key, row["status"], row["result"], row["error"])

    # Mirrored in pgqueue.areplywaiting (psycopg's async API): the same steps, sync here; a
    # change to one is a change to both (a shared helper would have to be both sync and async).
    def _wait(
        self,
        reply_key: str,
        deadline: float,
        wait: float,
        waiter: Waiter | None,
        *,
        poll_first: bool = False,
        paced: tuple[str, str] | None = None,
    ) -> CallResult:
        s = self.settings
        polls = 0
        last_error = ""
        listener = self._listener if waiter is not None else None
        # A caller that only polls times them from when its recent replies came (architecture §4).
        times = self._reply_times if waiter is None and paced and s.poll_adaptive else None
        typical = times.typical(paced) if times and paced else None
        began, last_empty = time.monotonic(), 0.0
        # With LISTEN in place the reply's NOTIFY wakes us: no poll before it can exist; with
        # a typical wait, none before its first due time.
        skip_poll = (listener is not None and listener.live and not poll_first) or (
            typical is not None
        )
        while True:
            if waiter is not None and waiter.reply is not None:
                return from_row(reply_key, *waiter.reply)  # it came in the NOTIFY
            if not skip_poll:
                polls += 1
                polled = time.monotonic() - began
                try:
                    result = self._take(reply_key, deadline)
                    if result is not None:
                        if times and paced:
                            times.record(paced, replypacing.sample(last_empty, polled))
                        return result
                    last_empty = polled
                    last_error = ""
                except (psycopg.Error, PoolTimeout, OSError) as exc:
                    # The database is away: keep trying until the deadline; the reply waits.
                    last_error = self._scrub(f"; last poll failed: {type(exc).__name__}: {exc}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info(
                    "call timed out: reply_key=%s timeout=%.3fs polls=%d", reply_key, wait, polls
                )
                return CallResult.failure(
                    reply_key, "timeout", f"no reply within {wait:g}s ({polls} polls){last_error}"
                )
            if waiter is not None and listener is not None and listener.live:
                # Trusting NOTIFY: poll when woken, and every poll_max as the safety net.
                waiter.event.wait(min(s.poll_max, remaining))
                skip_poll = False
                continue
            skip_poll = False
            # Flat and fast while the reply is likely, then doubling up to the cap.
            pause = replypacing.pause(polls, typical, s.poll_initial, s.poll_flat, s.poll_max)
            nap = min(pause, remaining)
            if waiter is not None:
                waiter.event.wait(nap)
            else:
                time.sleep(nap)
