"""The async client's reply listener: one LISTEN session per client, one task on the event loop.

It is :class:`pgqueue.listening.ReplyListener` for asyncio (same private channel, same keys,
same payload rules, read with :func:`~pgqueue.listening.parse_note`), with one difference that
matters when hundreds of calls wait at once: the safety net is the listener's, not each
caller's. While LISTEN is in place callers only await their reply; every ``poll_max`` the
listener takes, in one statement on its own session, the replies of every caller that has
waited that long — and, after each (re)connect, of every caller, which covers a reply stored
while it was away. A wake-up without the reply (one too big for a payload, or any note on the
shared channel) has its caller read its row at once, as the sync client does. A thousand
waiting calls cost one statement per ``poll_max``, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgqueue import adb, db, store
from pgqueue.listening import advise_grant, parse_note, wake_of
from pgqueue.settings import ClientSettings
from pgqueue.store import calls

log = logging.getLogger(__name__)

Reply = tuple[object, object, object]  # status, result, error


async def readable(conn: psycopg.AsyncConnection[Any], within: float) -> None:
    """Return once ``conn``'s socket is readable, or after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = conn.fileno()
    loop.add_reader(fd, wake)
    timer = loop.call_later(max(within, 0.0), wake)
    try:
        await ready
    finally:
        timer.cancel()
        loop.remove_reader(fd)


@dataclass(slots=True)
class AsyncWaiter:
    """One waiting call: ``event`` is set when its reply arrives, or when it should read its row."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reply: Reply | None = None
    since: float = field(default_factory=time.monotonic)


class AsyncReplyListener:
    """One LISTEN connection per :class:`~pgqueue.AsyncClient`, run as a task.

    ``live`` is true while LISTEN is in place: a reply cannot be stored then without its NOTIFY
    reaching this session or the listener's own sweep finding it, so callers need not poll.
    """

    def __init__(self, dsn: str, settings: ClientSettings, application_name: str) -> None:
        self._dsn = dsn
        self._settings = settings
        self._application_name = application_name
        self._waiters: dict[str, AsyncWaiter] = {}
        self._wakes: dict[str, str] = {}  # wake-up hash -> reply key
        self._handed: list[str] = []  # keys whose rows are to be deleted (replies in payloads)
        self._sweep_all = True
        self._task: asyncio.Task[None] | None = None
        self.live = False
        self.prefix = secrets.token_hex(8)
        self.channel = ""
        self.delivered = 0  # notifications received, for tests and debugging
        self.inline = 0  # replies read from a payload
        self.swept = 0  # replies taken by the safety-net sweep
        self.connects = 0
        self.backend_pid = 0  # the LISTEN session's server process, for pg_stat_activity
        # A statement on the listener's session that takes longer than this means a dead path:
        # the session is given up and callers poll on their own until it is back.
        self._bound = max(1.0, 10 * settings.poll_max)
        io = db.io_bound(settings)
        if io is not None:
            self._bound = min(self._bound, io)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="pgqueue-async-reply-listener"
            )

    def new_key(self) -> str:
        """A reply key routed to this listener whose reply may come in the payload."""
        return f"{self.prefix}.i.{uuid.uuid4().hex}"

    @property
    def waiting(self) -> int:
        """Reply keys with a caller registered (a cancelled call leaves none behind)."""
        return len(self._waiters)

    def register(self, reply_key: str) -> AsyncWaiter:
        waiter = AsyncWaiter()
        self._waiters[reply_key] = waiter
        if not reply_key.startswith(self.prefix):
            self._wakes[wake_of(reply_key)] = reply_key
        return waiter

    # The threaded twin (pgqueue.listening) differs on purpose: several waiters a key, a lock.
    def unregister(self, reply_key: str) -> None:
        self._waiters.pop(reply_key, None)
        if not reply_key.startswith(self.prefix):
            self._wakes.pop(wake_of(reply_key), None)

    def _deliver(self, channel: str, payload: str) -> None:
        self.delivered += 1
        key, reply = parse_note(payload)
        key = self._wakes.get(key, key)
        waiter = self._waiters.get(key)
        if waiter is None or waiter.reply is not None:
            return
        if reply is not None and self.channel and channel == self.channel:
            self.inline += 1
            waiter.reply = reply
            self._handed.append(key)
        # Otherwise a wake-up (a reply too big for a payload), or a "reply" on the shared
        # channel where anyone may NOTIFY, never believed: the caller reads its row at once.
        waiter.event.set()

    def _sweep_keys(self) -> list[str]:
        now = time.monotonic()
        if self._sweep_all:
            self._sweep_all = False
            keys = [k for k, w in self._waiters.items() if w.reply is None]
        else:
            old = now - self._settings.poll_max
            keys = [k for k, w in self._waiters.items() if w.reply is None and w.since <= old]
            for key in keys:
                self._waiters[key].since = now  # next due one poll_max later
        return keys

    async def _sweep(self, conn: adb.AsyncConn) -> None:
        handed, self._handed = self._handed, []
        keys = self._sweep_keys()
        async with asyncio.timeout(self._bound):
            if handed:
                await store.arun(conn, calls.clear_replies(handed))
            rows = await store.aevery(conn, calls.take_replies(keys)) if keys else []
        for row in rows:
            waiter = self._waiters.get(str(row["reply_key"]))
            if waiter is not None and waiter.reply is None:
                self.swept += 1
                waiter.reply = (row["status"], row["result"], row["error"])
                waiter.event.set()

    async def _session(self) -> None:
        conn = await adb.connect(self._dsn, self._settings, application_name=self._application_name)
        try:
            async with asyncio.timeout(self._bound):
                row = await store.aone(conn, calls.listen_replies(self.prefix))
            assert row is not None
            self.channel = str(row["channel"])
            self.backend_pid = conn.info.backend_pid
            self.connects += 1
            self._sweep_all = True  # a reply stored while we were away has no NOTIFY to come
            self.live = True
            await self._sweep(conn)
            next_sweep = time.monotonic() + self._settings.poll_max
            while True:
                # What is there now, and what psycopg set aside while the sweep ran; then a wait
                # for the socket of our own (readable): psycopg's timed wait also wakes every
                # 0.1 s, twice as often as an idle client needs (5.7 -> 4.2 ms of CPU a second).
                async for note in conn.notifies(timeout=0):
                    self._deliver(note.channel, note.payload)
                # Every poll_max: a reply whose NOTIFY never came is swept within two.
                if time.monotonic() >= next_sweep:
                    await self._sweep(conn)
                    next_sweep = time.monotonic() + self._settings.poll_max
                    continue
                await readable(conn, next_sweep - time.monotonic())
        finally:
            self.live = False
            await conn.close()

    async def _run(self) -> None:
        backoff = 0.1
        warned = False
        while True:
            before = self.connects
            try:
                await self._session()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                # Callers poll on their own meanwhile; this only costs latency.
                warned = advise_grant(log, exc, self._dsn, warned)
                log.debug("async reply listener reconnecting after %s", type(exc).__name__)
            for waiter in self._waiters.values():
                waiter.event.set()  # not live: they poll on their own from now on
            if self.connects > before:
                backoff = 0.1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.live = False
