"""``pgqueue stats`` and ``pgqueue queue list|show|purge``: what waits on the queues; clearing it.
(``queue pause|resume`` live in :mod:`pgqueue.cli.pauses`.)

``queue show`` pages by msg_id (``--after`` the last id of the previous page): a page walks the
primary key from its cursor and stops when full, so a deep page costs what the first does, and
nothing counts the queue.
``queue purge`` moves waiting messages to the dead-letter table (reason ``purged from queue ...``):
it can be undone with ``dlq replay``, a purged call's caller gets a failed reply at once instead
of waiting for its timeout, and messages a worker holds are left to finish.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TypedDict

from pgqueue import admin
from pgqueue.cli import pauses
from pgqueue.cli.common import (
    add_connection,
    add_json,
    add_yes,
    confirm,
    connection,
    positive_int,
    print_json,
    print_rows,
    queue_name,
    table,
    via,
    who,
)
from pgqueue.cli.parsing import EXIT_OK

_SHOW_COLUMNS = ["msg_id", "task", "tenant", "priority", "state", "attempts", "age", "visible_in"]


def _non_negative_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a msg_id (an integer), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def _stats_parser(p: argparse.ArgumentParser) -> None:
    add_connection(p)
    add_json(p, "the queues as a JSON array")
    p.set_defaults(handler=cmd_stats)


def _filters(p: argparse.ArgumentParser, states: Sequence[str], states_help: str) -> None:
    """The options of a _Selection, and where the database is."""
    add_connection(p)
    p.add_argument("name", type=queue_name, metavar="NAME", help="The queue.")
    p.add_argument("--task", default=None, help="Only messages of this task name.")
    p.add_argument("--tenant", default=None, help="Only messages of this tenant.")
    p.add_argument("--state", choices=states, default="all", help=states_help)


class _Selection(TypedDict):
    """Which of a queue's messages ``queue show`` lists and ``queue purge`` counts and moves."""

    task: str | None
    tenant: str | None
    state: str


def _selection(args: argparse.Namespace) -> _Selection:
    return _Selection(task=args.task, tenant=args.tenant, state=args.state)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _stats_parser(
        sub.add_parser(
            "stats",
            help="Per queue: ready, in flight, delayed, dead-lettered, oldest ready age, paused.",
            description="Per queue: ready, in flight, delayed, dead-lettered, oldest ready age "
            "(seconds), and whether it is paused (`pgqueue queue pause`). The same as "
            "`pgqueue queue list`.",
        )
    )
    queue = sub.add_parser(
        "queue", help="Queues: list them, show their messages, purge, pause and resume them."
    )
    qsub = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    _stats_parser(
        qsub.add_parser(
            "list",
            help="Per queue: ready, in flight, delayed, dead-lettered, oldest ready age, paused.",
            description="Every queue that has messages or dead letters, or is paused: ready "
            "(visible now), in flight (a worker holds its lease), delayed (not yet visible: "
            "--delay or a retry backoff), dead (in the dead-letter table), oldest_age (seconds "
            "the oldest ready message has waited), paused (yes: no worker claims from it; see "
            "`pgqueue queue pause`).",
        )
    )

    p = qsub.add_parser(
        "show",
        help="A page of a queue's messages (waiting, delayed, in flight), by task and tenant.",
        description="List a queue's messages in msg_id order, one page at a time: pass the "
        "next_after of a page (printed at its end) as --after to get the next. Times are "
        "seconds: age since enqueued, visible_in until a worker can claim it.",
    )
    _filters(p, admin.MESSAGE_STATES, "ready, delayed, in_flight or all (default all).")
    p.add_argument(
        "--after",
        type=_non_negative_id,
        default=0,
        metavar="MSG_ID",
        help="Start after this msg_id (the previous page's next_after); default 0.",
    )
    p.add_argument("--limit", type=positive_int, default=50, help="Page size (default 50).")
    add_json(p, "the page (messages with payloads, next_after)")
    p.set_defaults(handler=cmd_queue_show)

    p = qsub.add_parser(
        "purge",
        help="Move a queue's waiting messages to the dead-letter table (asks first).",
        description="Move a queue's waiting messages (ready, delayed or both; never those a "
        "worker holds) to the dead-letter table with the reason 'purged from queue NAME by "
        "user@host'. A purged call's caller gets a failed reply with that reason at once. "
        "Undo one with `pgqueue dlq replay ID`; delete them for good with `pgqueue dlq purge "
        "--queue NAME`. Asks on a terminal; needs --yes otherwise.",
    )
    _filters(p, admin.PURGE_STATES, "ready, delayed or all waiting messages (default all).")
    add_yes(p)
    add_json(p, "the counts")
    p.set_defaults(handler=cmd_queue_purge)

    pauses.register(qsub)


def cmd_stats(args: argparse.Namespace) -> int:
    conn = connection(args)
    stats = [s.as_dict() for s in admin.queue_stats(conn.dsn, **via(conn))]
    if not args.json:
        for row in stats:
            row["paused"] = "yes" if row["paused"] else "-"
    columns = ["queue", "ready", "in_flight", "delayed", "dead", "oldest_age", "paused"]
    empty = "no queues have messages or dead letters, and none is paused"
    print_rows(stats, columns, as_json=args.json, empty=empty)
    return EXIT_OK


def cmd_queue_show(args: argparse.Namespace) -> int:
    conn = connection(args)
    page, next_after = admin.queue_messages(
        conn.dsn, args.name, **_selection(args), after=args.after, limit=args.limit, **via(conn)
    )
    rows = [m.as_dict() for m in page]
    pause = pauses.pause_of(args.name, conn)
    if args.json:
        print_json(
            {
                "queue": args.name,
                "paused": None if pause is None else pause.as_dict(),
                "messages": rows,
                "next_after": next_after,
            }
        )
        return EXIT_OK
    if pause is not None:
        print(pause.standing())
    if not rows:
        print(f"no {'' if args.state == 'all' else args.state + ' '}messages on queue {args.name}"
              + (" after msg_id " + str(args.after) if args.after else ""))  # fmt: skip
        return EXIT_OK
    for row in rows:
        row["age"] = f"{row['age']:.1f}"
        row["visible_in"] = f"{row['visible_in']:.1f}"
        row["tenant"] = row["tenant"] or "-"
    print(table(rows, _SHOW_COLUMNS))
    if next_after is not None:
        print(f"next page: --after {next_after}")
    return EXIT_OK


def cmd_queue_purge(args: argparse.Namespace) -> int:
    conn = connection(args)
    scope = ", ".join(
        part
        for part in (
            f"task {args.task!r}" if args.task else "",
            f"tenant {args.tenant!r}" if args.tenant else "",
        )
        if part
    )
    states = "waiting (ready and delayed)" if args.state == "all" else args.state
    what = f"{states} messages of queue {args.name!r}" + (f" ({scope})" if scope else "")

    def counted() -> str:
        n = admin.count_purgeable(conn.dsn, args.name, **_selection(args), **via(conn))
        return f"Move the {n} {what} to the dead-letter table?"

    confirm(args, f"Move the {what} to the dead-letter table?", counted)
    report = admin.purge_queue(conn.dsn, args.name, **_selection(args), source=who(), **via(conn))
    if args.json:
        print_json({"queue": args.name, **report.as_dict()})
    else:
        print(
            f"purged {report.purged} messages from queue {args.name} to the dead-letter table"
            f" ({report.callers_told} waiting callers told)"
        )
    return EXIT_OK
