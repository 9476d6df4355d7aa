"""``pgqueue dlq list|replay|purge``: the dead-letter table, where every dropped message lands."""

from __future__ import annotations

import argparse
import sys

from pgqueue import admin
from pgqueue.cli import common
from pgqueue.cli.parsing import EXIT_FAILURE, EXIT_OK


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser("dlq", help="Dead letters: list, replay, purge.")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    p = dsub.add_parser(
        "list",
        help="List dead letters with their reasons.",
        description="List dead letters, oldest first, with the reason each was dropped.",
    )
    common.add_connection(p)
    p.add_argument("--queue", type=common.queue_name, default=None, help="Only this queue.")
    p.add_argument(
        "--limit", type=common.positive_int, default=100, help="At most this many (default 100)."
    )
    p.add_argument(
        "--reason",
        default=None,
        metavar="PREFIX",
        help="Only those whose reason starts with PREFIX, e.g. cancelled (the cancelled messages).",
    )
    common.add_json(p, "the dead letters as a JSON array")
    p.set_defaults(handler=cmd_dlq_list)

    p = dsub.add_parser(
        "replay",
        help="Put a dead letter back on its queue as a fresh message.",
        description="Put a dead letter back on its queue as a fresh message (attempts start "
        "again) and delete it from the dead-letter table. Exit 1 when there is no such id.",
    )
    common.add_connection(p)
    p.add_argument("dl_id", type=common.positive_int, help="The dead letter's id (from dlq list).")
    common.add_json(p, '{"dl_id": ID, "msg_id": NEW_ID}')
    p.set_defaults(handler=cmd_dlq_replay)

    p = dsub.add_parser(
        "purge",
        help="Delete dead letters for good (all, or one queue's); asks first.",
        description="Delete dead letters for good: all of them, or one queue's. Asks on a "
        "terminal; needs --yes otherwise.",
    )
    common.add_connection(p)
    p.add_argument("--queue", type=common.queue_name, default=None, help="Only this queue.")
    common.add_yes(p)
    common.add_json(p, '{"purged": N}')
    p.set_defaults(handler=cmd_dlq_purge)


def cmd_dlq_list(args: argparse.Namespace) -> int:
    conn = common.connection(args)
    letters = admin.dead_letters(
        conn.dsn,
        queue=args.queue,
        limit=args.limit,
        reason_prefix=args.reason,
        **common.via(conn),
    )
    rows = [letter.as_dict() for letter in letters]
    columns = ["dl_id", "queue", "task", "read_ct", "failed_at", "reason"]
    common.print_rows(rows, columns, as_json=args.json, empty="no dead letters")
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    conn = common.connection(args)
    msg_id = admin.replay_dead_letter(conn.dsn, args.dl_id, **common.via(conn))
    if msg_id is None:
        print(f"pgqueue: error: dlq replay: no dead letter with id {args.dl_id}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        common.print_json({"dl_id": args.dl_id, "msg_id": msg_id})
    else:
        print(f"dead letter {args.dl_id} replayed as msg_id {msg_id}")
    return EXIT_OK


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    conn = common.connection(args)
    scope = f"of queue {args.queue!r}" if args.queue else "of every queue"
    common.confirm(args, f"Delete the dead letters {scope} for good?")
    purged = admin.purge_dead_letters(conn.dsn, queue=args.queue, **common.via(conn))
    if args.json:
        common.print_json({"purged": purged, "queue": args.queue})
    else:
        print(f"purged {purged} dead letters")
    return EXIT_OK
