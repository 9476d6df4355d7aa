"""The statements of a fleet of workers about itself: the worker registry, the waiting marks
that let an enqueue wake one idle worker, the periodic ticks, the vacuum check and the depth
sampler's lock.

:mod:`pgqueue.registry`, :mod:`pgqueue.waking`, :mod:`pgqueue.ticking`,
:mod:`pgqueue.maintenance` and :mod:`pgqueue.depth` decide when to write and what a refusal
means; these only say it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg.rows import dict_row

from pgqueue import sqlfiles
from pgqueue.store import Conn, Row

# -- the worker registry -----------------------------------------------------------------------


def register(conn: Conn, params: dict[str, Any]) -> None:
    """Write (or replace) a worker's row (``registry_register``; parameters from
    :meth:`pgqueue.registry.WorkerInfo.params`)."""
    conn.execute(sqlfiles.query("registry_register"), params)


def beat(conn: Conn, params: dict[str, Any]) -> None:
    """Refresh a worker's heartbeat and busy slots, re-creating a pruned row (``registry_beat``)."""
    conn.execute(sqlfiles.query("registry_beat"), params)


def deregister(conn: Conn, worker_id: str) -> None:
    """Remove a worker's row (``registry_deregister``)."""
    conn.execute(sqlfiles.query("registry_deregister"), {"worker_id": worker_id})


def prune(conn: Conn, older_than: float) -> int:
    """Delete the rows of workers silent for ``older_than`` seconds; how many
    (``registry_prune``)."""
    return conn.execute(sqlfiles.query("registry_prune"), {"older_than": older_than}).rowcount


def workers(conn: Conn) -> list[Row]:
    """Every registered worker, stale ones included, as dicts whatever the connection's row
    factory (``registry_list``; the fields of :class:`pgqueue.registry.WorkerRow`)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sqlfiles.query("registry_list")).fetchall()


# -- waiting marks (an enqueue wakes one idle worker) -------------------------------------------


def wait_for_work(conn: Conn, worker_id: str, channel: str, queues: list[str]) -> None:
    """Mark the worker waiting on ``channel`` for these queues (``wait_for_work``)."""
    params = {"worker_id": worker_id, "channel": channel, "queues": queues}
    conn.execute(sqlfiles.query("wait_for_work"), params)


def stop_waiting(conn: Conn, worker_id: str) -> None:
    """Take the worker's waiting mark back (``stop_waiting``)."""
    conn.execute(sqlfiles.query("stop_waiting"), {"worker_id": worker_id})


def forget_waiting(conn: Conn, worker_id: str) -> None:
    """Drop the marks a past session of the worker left (``forget_waiting``)."""
    conn.execute(sqlfiles.query("forget_waiting"), {"worker_id": worker_id})


# -- periodic ticks ----------------------------------------------------------------------------


def last_ticks(conn: Conn, schedules: list[str]) -> list[Row]:
    """The last tick fired of each of these schedules, as ``schedule``, ``tick_at``
    (``periodic_last``)."""
    return conn.execute(sqlfiles.query("periodic_last"), {"schedules": schedules}).fetchall()


def fire(conn: Conn, params: dict[str, Any]) -> Row | None:
    """Enqueue one tick's message unless another worker fired it; its ``msg_id``, None if
    already fired (``periodic_fire``; parameters from :class:`pgqueue.ticking.Scheduler`)."""
    return conn.execute(sqlfiles.query("periodic_fire"), params).fetchone()


def prune_ticks(conn: Conn, cutoff: dt.datetime, batch_size: int) -> Row | None:
    """Delete one batch of ticks older than ``cutoff``; how many, as ``deleted``
    (``periodic_prune``)."""
    params = {"cutoff": cutoff, "batch_size": batch_size}
    return conn.execute(sqlfiles.query("periodic_prune"), params).fetchone()


def every_last_tick(conn: Conn) -> list[Row]:
    """The latest tick row of every schedule ever fired (``periodic_list``)."""
    return conn.execute(sqlfiles.query("periodic_list")).fetchall()


# -- upkeep ------------------------------------------------------------------------------------


def vacuum_due(conn: Conn, interval: float) -> Row | None:
    """Whether the queue tables are ``due`` a vacuum: none ran within ``interval`` seconds
    (``vacuum_due``)."""
    return conn.execute(sqlfiles.query("vacuum_due"), {"interval": interval}).fetchone()


def depth_sampler_lock(conn: Conn) -> Row | None:
    """Try the depth sampler's session lock; ``held`` says whether this session has it
    (``depth_sampler_lock``)."""
    return conn.execute(sqlfiles.query("depth_sampler_lock")).fetchone()
