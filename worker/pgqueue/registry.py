"""The registry of live workers: one row per worker process in ``pgqueue.worker``.

A worker registers at start, beats with its busy slot count (from its heartbeat) and deregisters
at a clean stop; a worker killed without a stop leaves a row whose heartbeat ages, which readers
show as stale and :func:`prune` removes. Every function takes the caller's connection (autocommit,
or inside the caller's transaction) so the worker pays no extra connection for it, and a failed
write never stops a worker: the registry is for people watching, not for correctness.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import psycopg

from pgqueue.store import fleet

Connection = psycopg.Connection[Any]

log = logging.getLogger(__name__)

# A row older than this is removed by prune(); readers call a worker stale much sooner.
PRUNE_AFTER = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker says about itself; the same on every beat."""

    worker_id: str
    queues: tuple[str, ...]
    slots: int
    # Read when the info is made, not at import (a forked process has its own pid).
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    version: str = ""

    def params(self, busy: int = 0) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "slots": self.slots,
            "busy": busy,
            "version": self.version or package_version(),
        }


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    host: str
    pid: int
    queues: list[str]
    slots: int
    busy: int
    version: str
    started_at: dt.datetime
    heartbeat_age: float

    def stale(self, after: float) -> bool:
        return self.heartbeat_age > after


def package_version() -> str:
    try:
        return metadata.version("pgqueue")
    except metadata.PackageNotFoundError:  # run from a source tree without an install
        return "unknown"


def register(conn: Connection, info: WorkerInfo) -> bool:
    """Write (or replace) this worker's row, with no slot busy, and drop rows silent for
    :data:`PRUNE_AFTER`. False (logged) when the database refused: the worker runs on."""
    written = _write("register", lambda: fleet.register(conn, info.params()))
    _write("prune", lambda: fleet.prune(conn, PRUNE_AFTER))
    return written


def beat(conn: Connection, info: WorkerInfo, busy: int) -> bool:
    """Refresh the heartbeat and the busy slot count (re-creating a row that was pruned)."""
    return _write("beat", lambda: fleet.beat(conn, info.params(busy)))


def deregister(conn: Connection, worker_id: str) -> bool:
    """Remove this worker's row at a clean stop."""
    return _write("deregister", lambda: fleet.deregister(conn, worker_id))


def prune(conn: Connection, older_than: float = PRUNE_AFTER) -> int:
    """Delete the rows of workers silent for ``older_than`` seconds; returns how many."""
    return fleet.prune(conn, older_than)


def _write(verb: str, write: Callable[[], object]) -> bool:
    # Call on an autocommit connection: inside a caller's transaction, a refused write would
    # leave that transaction aborted.
    try:
        write()
    except psycopg.Error as exc:
        log.warning("worker registry: %s failed (%s); the worker runs on", verb, type(exc).__name__)
        return False
    return True


def workers(conn: Connection) -> list[WorkerRow]:
    """Every registered worker, stale ones included (see :meth:`WorkerRow.stale`)."""
    return [WorkerRow(**row) for row in fleet.workers(conn)]
