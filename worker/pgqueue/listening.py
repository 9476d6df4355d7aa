"""The client's reply listener: one LISTEN session per client that wakes its waiting callers.

Replies are for their caller only (issue 14). A client's reply keys start with its random
``prefix``; workers notify such a key on the client's private channel, whose name is a keyed
hash of the prefix under a server secret (``pgqueue.reply_channel``): a role that cannot read
``pgqueue.reply_secret`` cannot derive it, and the listener LISTENs through
``pgqueue.listen_replies`` so that the name never shows in ``pg_stat_activity``. A reply read
from a NOTIFY payload is accepted only from that private channel; the shared channel, where any
role that can connect may LISTEN or NOTIFY, carries a hash of a key (a wake-up, never a key or a
reply), and whatever arrives there only makes a caller read its row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import secrets
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgqueue import db, store
from pgqueue.settings import ConnectionSettings
from pgqueue.store import calls

log = logging.getLogger(__name__)

REPLY_CHANNEL = "pgqueue_reply"  # shared: wake-ups for keys without a listener's prefix
# The rows of replies handed over in a payload are deleted in one statement per this many seconds.
CLEAR_ROUND = 0.2
# Longest quiet wait on the socket: a notification parsed while another statement ran and left in
# libpq's buffer (no byte left to make the socket readable) waits no longer than this, and a
# waiting caller reads its row on its own after poll_max anyway.
IDLE_ROUND = 1.0


def wake_of(reply_key: str) -> str:
    """The shared channel's wake-up for a key (``pgqueue.reply_wake``): a hash, not the key."""
    return "w:" + hashlib.sha256(reply_key.encode()).hexdigest()[:32]


class Wake:
    """A wake-up that waits for its caller: ``set`` any number of times, ``wait`` takes it.

    One lock held while nobody woke it: ``wait`` is one acquire in C where
    :class:`threading.Event` runs a Condition in Python (a fresh lock, a waiter list and two
    more acquires per wait), which eight threads sharing a client paid on every call. A ``set``
    between two waits is kept for the next one, never lost.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # woken already: it waits for the next wait()
            self._lock.release()

    def wait(self, timeout: float) -> bool:
        """Whether it was woken within ``timeout`` seconds (and takes that wake-up)."""
        return self._lock.acquire(timeout=max(timeout, 0.0))


@dataclass(slots=True)
class Waiter:
    """One waiting call: woken by its NOTIFY, which may carry the reply itself."""

    event: Wake = field(default_factory=Wake)
    reply: tuple[object, object, object] | None = None  # status, result, error


def parse_note(payload: str) -> tuple[str, tuple[object, object, object] | None]:
    """(reply key or wake-up, the reply if the payload carries it): see ``pgqueue.reply_note``."""
    if payload.startswith("{"):
        try:
            note = json.loads(payload)
            return str(note["k"]), (note["s"], note["r"], note["e"])
        except (ValueError, KeyError, TypeError):
            pass  # not a reply: a stray payload wakes nobody
    return payload, None


def advise_grant(logger: logging.Logger, exc: BaseException, dsn: str, warned: bool) -> bool:
    """Warn once per listener, the same advice whichever client's listener it is, when its role
    may not LISTEN on a private channel (no SELECT on ``pgqueue.reply_secret``); whether it has
    warned now."""
    if warned or not isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return warned
    logger.warning(
        "reply listener cannot LISTEN (%s): grant SELECT on "
        "pgqueue.reply_secret to this role; callers poll meanwhile",
        db.scrub(str(exc).splitlines()[0], dsn),
    )
    return True


class ReplyListener:
    """One LISTEN connection per client that wakes the callers waiting on a reply key.

    While it is ``live`` (LISTEN in place) a reply cannot be stored without its NOTIFY reaching
    this session, so waiters poll only as a safety net; on every (re)connect it wakes all of them
    once, which covers a reply stored while it was away.

    A reply that fits in a NOTIFY payload arrives in it (``pgqueue.reply_note``) on the private
    channel: the waiter returns it without reading the row, and this thread deletes the rows it
    handed over in one statement per batch, between two reads of the socket. Replies that arrive
    for no waiter (the call timed out meanwhile) are left to the retention sweep.
    """

    def __init__(self, dsn: str, settings: ConnectionSettings) -> None:
        self._dsn = dsn
        self._settings = settings
        # Several callers may wait on one key (unique calls attached to the same message).
        self._waiters: dict[str, list[Waiter]] = {}
        self._wakes: dict[str, str] = {}  # wake-up hash -> reply key
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # close() writes here: the listener's wait on its socket ends at once.
        self._stop_r, self._stop_w = os.pipe()
        self._handed: list[str] = []  # reply keys whose rows are to be deleted
        self.live = False
        self.prefix = secrets.token_hex(8)
        # Keys need to be unique, not secret (the private channel's name is the secret, and
        # a role that may read keys may read the messages): a generator seeded once from the
        # OS makes them without os.urandom, a syscall that hands the GIL to another thread.
        self._rng = random.Random(secrets.randbits(128))  # noqa: S311 - unique, not secret
        self.channel = ""  # the private channel, once LISTEN is in place
        self.delivered = 0  # notifications received (all keys), for tests and debugging
        self.inline = 0  # of them, replies read from the payload
        self.refused = 0  # inline replies ignored because they came on the shared channel
        self._thread = threading.Thread(
            target=self._run, name="pgqueue-reply-listener", daemon=True
        )
        self._thread.start()

    @property
    def ident(self) -> int | None:
        """The listener thread's identifier (``threading.get_ident``), e.g. for its CPU clock
        (``time.pthread_getcpuclockid``)."""
        return self._thread.ident

    def new_key(self) -> str:
        """A reply key routed to this listener whose reply may come in the payload."""
        return f"{self.prefix}.i.{self._rng.getrandbits(128):032x}"

    def register(self, reply_key: str) -> Waiter:
        waiter = Waiter()
        with self._lock:
            self._waiters.setdefault(reply_key, []).append(waiter)
            if not reply_key.startswith(self.prefix):
                self._wakes[wake_of(reply_key)] = reply_key
        return waiter

    # The asyncio twin (pgqueue.alistening) differs on purpose: one waiter per key, no lock.
    def unregister(self, reply_key: str, waiter: Waiter | None = None) -> None:
        """Stop waking ``waiter`` (every waiter of the key when ``None``)."""
        with self._lock:
            waiters = self._waiters.get(reply_key, [])
            if waiter is not None and waiter in waiters:
                waiters.remove(waiter)
            if waiter is None or not waiters:
                self._waiters.pop(reply_key, None)
                if not reply_key.startswith(self.prefix):
                    self._wakes.pop(wake_of(reply_key), None)

    def _deliver(self, channel: str, payload: str) -> None:
        self.delivered += 1
        key, reply = parse_note(payload)
        private = bool(self.channel) and channel == self.channel
        with self._lock:
            key = self._wakes.get(key, key)
            waiters = list(self._waiters.get(key, ()))
            if not waiters:
                return
            if reply is not None:
                if not private:
                    # Anyone may NOTIFY the shared channel: a reply there is never believed,
                    # it only makes the caller read its row.
                    self.refused += 1
                else:
                    self.inline += 1
                    for waiter in waiters:
                        waiter.reply = reply
                    self._handed.append(key)
        for waiter in waiters:
            waiter.event.set()

    def _clear_handed(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        with self._lock:
            keys, self._handed = self._handed, []
        if keys:
            store.run(conn, calls.clear_replies(keys))

    def _listen(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        """Deliver what arrives until stopped; delete handed-over rows every CLEAR_ROUND.

        The wait is poll(2) on the socket, not ``conn.notifies(timeout=...)``: psycopg's timed
        wait (3.3) polls in whole milliseconds and spins through the last one, ~0.8 ms of CPU
        each time it expires, 4 ms/s for a client that listens in rounds of 0.2 s and does
        nothing (0.8 of a core for 200 idle web processes). ``notifies(timeout=0)`` only takes
        what is there: what the socket holds, and what psycopg set aside while a statement of
        ours ran on this connection (so it runs again after each statement, before a wait).
        """
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        clear_at = 0.0
        while not self._stop.is_set():
            for note in conn.notifies(timeout=0):
                self._deliver(note.channel, note.payload)
            now = time.monotonic()
            if self._handed and now >= clear_at:
                self._clear_handed(conn)
                clear_at = now + CLEAR_ROUND
                continue
            wait = clear_at - now if self._handed else IDLE_ROUND
            poller.poll(math.ceil(wait * 1000))

    def _run(self) -> None:
        backoff = 0.1
        warned = False
        while not self._stop.is_set():
            try:
                with db.connect(
                    self._dsn,
                    connect_timeout=self._settings.connect_timeout,
                    settings=self._settings,
                    application_name="pgqueue-client",
                ) as conn:
                    row = store.one(conn, calls.listen_replies(self.prefix))
                    assert row is not None
                    self.channel = str(row["channel"])
                    backoff = 0.1
                    warned = False
                    with self._lock:
                        self.live = True
                        for waiters in self._waiters.values():
                            for waiter in waiters:
                                waiter.event.set()
                    self._listen(conn)
            except psycopg.Error as exc:
                # Callers poll on their fast schedule meanwhile; this only costs latency.
                self.live = False
                warned = advise_grant(log, exc, self._dsn, warned)
                log.debug("reply listener reconnecting after %s", type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # closed twice
            os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        self.live = False
        if not self._thread.is_alive():
            for fd in (self._stop_r, self._stop_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
