"""What the console reads: queue totals (sampled and shared), keyset pages of messages, dead
letters, the gate and its history, the worker registry.

Reads run on a small connection pool, each in a transaction with a statement timeout, so a filter
that would walk a huge queue fails fast instead of loading the database. Queue totals come from
``queue_stats`` (a scan of the message table), taken at most once per ``stats_ttl`` however many
browsers poll: the one read that costs as much as the backlog is shared, every other read is a
keyset page whose cost does not grow with the queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from pgqueue import admin, registry
from pgqueue.store import inspection

T = TypeVar("T")

log = logging.getLogger("pgqueue.web")

PAYLOAD_CAP = 4096  # characters of pretty JSON shown per dead letter; the rest is cut and counted


@dataclass(frozen=True, slots=True)
class MessageRow:
    msg_id: int
    task_name: str
    tenant: str
    priority: int
    read_ct: int
    has_reply: bool
    claimed_by: str | None
    state: str
    age: float
    visible_in: float


@dataclass(frozen=True, slots=True)
class MessagePage:
    rows: list[MessageRow]
    next_after: int | None  # the keyset cursor of the next page; None on the last page
    # True when the page stopped at the scan cap, not at a full page: the filter matched fewer
    # rows than a page among the SCAN messages looked at; the next page searches on from there.
    cut: bool = False


# Messages one filtered page looks at, at most (about 0.1 s of reading; docs/web.md).
SCAN = 20_000


@dataclass(frozen=True, slots=True)
class FlagChange:
    change_id: int
    key: str
    enabled: bool
    value: str
    source: str
    changed_at: Any


@dataclass
class StatsSample:
    taken: float = 0.0
    stats: list[admin.QueueStats] = field(default_factory=list)


class Reader:
    """The console's read side over one database; thread-safe."""

    def __init__(
        self,
        dsn: str,
        *,
        pooled: bool = False,
        stats_ttl: float = 2.0,
        query_timeout: float = 5.0,
        max_connections: int = 4,
        scan: int = SCAN,
    ) -> None:
        self.dsn = dsn
        self.pooled = pooled
        self.stats_ttl = stats_ttl
        self.query_timeout = query_timeout
        self.scan = scan
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": None if pooled else 5,
                "application_name": "pgqueue-web",
            },
            open=False,
            name="pgqueue-web",
            # A connection cut while idle is found out at checkout, not by a failed page.
            check=ConnectionPool.check_connection,
        )
        self._sample = StatsSample()
        self._sampling = threading.Lock()

    def open(self) -> None:
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _read(self, wait: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        wait = self.query_timeout if wait is None else wait
        with self._pool.connection(timeout=wait) as conn, conn.transaction():
            limit = f"{round(self.query_timeout * 1000)}ms"
            inspection.web_read_limits(conn, limit)
            yield conn

    def ping(self) -> None:
        """One round trip; a probe answers within a second or two, not after query_timeout."""
        with self._read(wait=min(self.query_timeout, 1.5)) as conn:
            conn.execute("SELECT 1")

    # -- queues ------------------------------------------------------------------------------

    def queue_stats(self) -> tuple[list[admin.QueueStats], float]:
        """Per-queue totals and their age in seconds.

        One sample per ``stats_ttl``, shared by every request. Only the very first request waits
        for a sample; later ones get the last sample at once while a background thread takes
        the next, so a page's answer time never includes a scan of the backlog.
        """
        sample = self._sample
        if not sample.taken:
            with self._sampling:
                if not self._sample.taken:
                    self._take_sample()
        elif time.monotonic() - sample.taken >= self.stats_ttl and self._sampling.acquire(
            blocking=False
        ):
            threading.Thread(target=self._sample_in_background, daemon=True).start()
        sample = self._sample
        return sample.stats, time.monotonic() - sample.taken

    def _take_sample(self) -> None:
        with self._read() as conn:
            rows = inspection.queue_stats(conn)
        self._sample = StatsSample(time.monotonic(), [admin.QueueStats(**r) for r in rows])

    def _sample_in_background(self) -> None:
        try:
            self._take_sample()
        except (psycopg.Error, PoolTimeout) as exc:
            # The page keeps showing the last sample, and says how old it is.
            log.warning("web: sampling the queue totals failed: %s", type(exc).__name__)
        finally:
            self._sampling.release()

    def messages(
        self,
        queue: str,
        *,
        after: int = 0,
        limit: int = 50,
        task: str | None = None,
        tenant: str | None = None,
        state: str | None = None,
        scan: int | None = None,
    ) -> MessagePage:
        params = {
            "queue": queue,
            "after": after,
            "limit": limit + 1,  # one more than shown says whether a next page exists
            "scan": max(scan or self.scan, limit + 1),
            "task": task or None,
            "tenant": tenant if tenant is not None and tenant != "*" else None,
            "state": state or None,
        }
        with self._read() as conn:
            rows = inspection.web_messages(conn, params)
        shown = [MessageRow(**{k: v for k, v in r.items() if k != "matches"}) for r in rows]
        matched = [m for m, r in zip(shown, rows, strict=True) if r["matches"]]
        if len(matched) > limit:
            return MessagePage(matched[:limit], matched[limit - 1].msg_id)
        if rows and not rows[-1]["matches"]:
            # The scan cap was reached before a full page matched: search on from there.
            return MessagePage(matched, shown[-1].msg_id, cut=True)
        return MessagePage(matched, None)

    # -- gate and workers --------------------------------------------------------------------

    def flag_history(self, key: str = admin.GATE_FLAG, limit: int = 50) -> list[FlagChange]:
        with self._read() as conn:
            rows = inspection.flag_history(conn, key, limit)
        return [FlagChange(**r) for r in rows]

    def workers(self) -> list[registry.WorkerRow]:
        with self._read() as conn:
            return registry.workers(conn)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """An admin function (which opens its own short connection) with this reader's DSN."""
        return func(self.dsn, *args, pooled=self.pooled, **kwargs)


def pretty_payload(payload: Any, cap: int = PAYLOAD_CAP) -> tuple[str, int]:
    """Indented JSON, cut at ``cap`` characters; returns (text, characters cut)."""
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= cap:
        return text, 0
    return text[:cap], len(text) - cap


def age(seconds: float | None) -> str:
    """A short human age: 850ms, 42s, 7m 3s, 5h 2m, 3d 4h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f}ms"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
