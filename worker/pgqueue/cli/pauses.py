"""``pgqueue queue pause|resume NAME``: stop every worker claiming from a queue, and let them again.

The actions of the ``queue`` group that :mod:`pgqueue.cli.queues` builds; the state lives in
Postgres (:mod:`pgqueue.pausing`), shared by every worker of the queue. Both are idempotent: a
second pause (or a resume of a queue that is not paused) changes nothing, says so and exits 0.
"""

from __future__ import annotations

import argparse

from pgqueue import pausing
from pgqueue.cli.common import (
    add_connection,
    add_json,
    connection,
    print_json,
    queue_name,
    via,
    who,
)
from pgqueue.cli.parsing import EXIT_OK
from pgqueue.errors import ConfigurationError
from pgqueue.settings import ConnectionSettings

_PAUSE = (
    "Stop every worker claiming from queue NAME, until `pgqueue queue resume NAME`. Shared by all "
    "consumers of the queue, whichever deployment or host they run in; their processes keep "
    "running. Takes effect before the command returns (no claim of the queue is in flight once "
    "it has) and is seen by every worker's next poll; tasks already running finish and settle. "
    "Enqueues still succeed, and calls wait like any unclaimed call: their callers time out at "
    "their deadline. A queue with no messages yet may be paused (before a deploy, say). Who "
    "(user@host) and when are recorded, with --reason; a second pause keeps the first one's. "
    "`pgqueue stats` shows paused queues."
)
_RESUME = (
    "Let workers claim from queue NAME again: idle workers are woken at once (NOTIFY) and drain "
    "it; a worker behind a transaction pooler (no LISTEN) does at its next poll. Resuming a "
    "queue that is not paused changes nothing."
)


def _reason(text: str) -> str:
    """argparse type: a pause's reason."""
    try:
        return pausing.check_reason(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def register(qsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pause`` and ``resume`` to the ``queue`` group."""
    p = qsub.add_parser(
        "pause",
        help="Stop every worker claiming from a queue (running tasks finish).",
        description=_PAUSE,
    )
    p.add_argument("name", type=queue_name, metavar="NAME", help="The queue.")
    p.add_argument(
        "--reason",
        default="",
        type=_reason,
        help=f"Why, recorded with the pause (one line, at most {pausing.REASON_MAX} characters).",
    )
    add_connection(p)
    add_json(p, "the queue's pause state")
    p.set_defaults(handler=cmd_queue_pause)

    p = qsub.add_parser(
        "resume",
        help="Let workers claim from a paused queue again (they drain it at once).",
        description=_RESUME,
    )
    p.add_argument("name", type=queue_name, metavar="NAME", help="The queue.")
    add_connection(p)
    add_json(p, "the queue's pause state")
    p.set_defaults(handler=cmd_queue_resume)


def pause_of(queue: str, conn: ConnectionSettings) -> pausing.QueuePause | None:
    """The pause of ``queue`` for a listing command, or None."""
    return pausing.pause_of(conn.dsn, queue, **via(conn))


def _print(state: pausing.QueuePause, as_json: bool) -> int:
    if as_json:
        print_json(state.as_dict())
    else:
        print(state.describe())
    return EXIT_OK


def cmd_queue_pause(args: argparse.Namespace) -> int:
    conn = connection(args)
    state = pausing.pause_queue(
        conn.dsn,
        args.name,
        by=who(),
        reason=args.reason,
        **via(conn),
    )
    return _print(state, args.json)


def cmd_queue_resume(args: argparse.Namespace) -> int:
    conn = connection(args)
    state = pausing.resume_queue(conn.dsn, args.name, by=who(), **via(conn))
    return _print(state, args.json)
