"""The asyncio client's wait for a reply: the listener's hand-over, else polls, until the deadline.

Mirrors :mod:`pgqueue.replywaiting` on psycopg's async API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pgqueue import replypacing, store
from pgqueue.aclientpool import AsyncClientConnections, AsyncConn
from pgqueue.alistening import AsyncWaiter
from pgqueue.replies import CallResult, from_row
from pgqueue.store import calls

# One logger for the async client, whichever part of it speaks.
log = logging.getLogger("pgqueue.aclient")


class AsyncReplyWaiting(AsyncClientConnections):
    """Taking a reply from the table, and waiting for it until the deadline."""

    async def _take(self, reply_key: str) -> CallResult | None:
        statement = calls.take_reply(reply_key)

        async def take(conn: AsyncConn) -> dict[str, Any] | None:
            return await store.aone(conn, statement)

        row = await self._run(take, "take_reply")
        if row is None:
            return None
        return from_row(reply_key, row["status"], row["result"], row["error"])

    # Mirrors pgqueue.replywaiting (psycopg's sync API): the same steps on the
    # event loop; a change to one is a change to both.
    async def _wait(
        self,
        reply_key: str,
        deadline: float,
        wait: float,
        waiter: AsyncWaiter | None,
        state: Polls,
        paced: tuple[str, str] | None = None,
    ) -> CallResult:
        s = self.settings
        listener = self._listener if waiter is not None else None
        # A caller that only polls times them from when its recent replies came (architecture §4).
        times = self._reply_times if waiter is None and paced and s.poll_adaptive else None
        typical = times.typical(paced) if times and paced else None
        began, last_empty = time.monotonic(), 0.0
        # With LISTEN in place the listener hands the reply over (or sweeps it): no polling;
        # with a typical wait, no poll before its first due time.
        skip_poll = (listener is not None and listener.live) or typical is not None
        while True:
            if waiter is not None and waiter.reply is not None:
                return from_row(reply_key, *waiter.reply)
            if not skip_poll:
                state.polls += 1
                polled = time.monotonic() - began
                try:
                    result = await self._take(reply_key)
                    if result is not None:
                        if times and paced:
                            times.record(paced, replypacing.sample(last_empty, polled))
                        return result
                    last_empty = polled
                    state.last_error = ""
                except (psycopg.Error, PoolTimeout, OSError) as exc:
                    # The database is away: keep trying until the deadline; the reply waits.
                    state.last_error = self._scrub(
                        f"; last poll failed: {type(exc).__name__}: {exc}"
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return state.timed_out(reply_key, wait, state.last_error)
            live = listener is not None and listener.live
            # Flat and fast while the reply is likely, then doubling up to the cap.
            pause = replypacing.pause(state.polls, typical, s.poll_initial, s.poll_flat, s.poll_max)
            nap = remaining if live else min(pause, remaining)
            woken = False
            if waiter is not None:
                try:
                    async with asyncio.timeout(nap):
                        await waiter.event.wait()
                    woken = True
                except TimeoutError:
                    pass
                waiter.event.clear()
            else:
                await asyncio.sleep(nap)
            # While the listener is live a caller reads its row only when woken without its
            # reply (a wake-up, or the listener lost); otherwise the listener's sweep covers it.
            skip_poll = listener is not None and listener.live and not woken


class Polls:
    """What a call's wait did, for its timeout message."""

    __slots__ = ("last_error", "polls")

    def __init__(self) -> None:
        self.polls = 0
        self.last_error = ""

    def timed_out(self, reply_key: str, wait: float, detail: str) -> CallResult:
        log.info("call timed out: reply_key=%s timeout=%.3fs polls=%d", reply_key, wait, self.polls)
        return CallResult.failure(
            reply_key, "timeout", f"no reply within {wait:g}s ({self.polls} polls){detail}"
        )
