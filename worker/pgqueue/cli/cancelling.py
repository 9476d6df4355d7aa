"""``pgqueue cancel ID``: cancel a message, waiting or running (see :mod:`pgqueue.cancelling`)."""

from __future__ import annotations

import argparse
import sys

from pgqueue import cancelling, db
from pgqueue.cli.common import CliError, add_connection, add_json, connection, print_json, via, who
from pgqueue.cli.parsing import EXIT_FAILURE, EXIT_OK
from pgqueue.errors import ConfigurationError, UnknownMessage


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cancel",
        help="Cancel a message: a waiting one never runs, a running one is killed.",
        description=(
            "Cancel a message by msg_id (digits) or reply key (anything else). A waiting message "
            "never runs. A running one is killed by its worker, with every process the task "
            "spawned, within lease/3 + 1 s (at once when the worker can LISTEN). A caller waiting "
            "on it gets kind=cancelled at once. Either way the message moves to the dead-letter "
            "table with a reason starting 'cancelled' (dlq list shows it, dlq replay runs it "
            "again). A message already finished, dead-lettered or cancelled is left as it is and "
            "reported 'already done' (exit 0); an id or key pgqueue does not know exits 1."
        ),
    )
    p.add_argument("id", metavar="ID", help="The msg_id (as enqueue prints it) or a reply key.")
    add_connection(p)
    p.add_argument(
        "--by",
        default=None,
        help="Who cancels, recorded in the dead-letter reason (default: cli user@host).",
    )
    add_json(p, '{"outcome": "cancelled"|"already_done"|"unknown", "state": ..., ...}')
    p.set_defaults(handler=cmd_cancel)


def cmd_cancel(args: argparse.Namespace) -> int:
    try:
        cancelling.target_of(args.id)
    except ConfigurationError as exc:
        raise CliError("ID", f"not a msg_id or a reply key: {exc.problem}") from None
    settings = connection(args)
    try:
        with db.connect(settings.dsn, **via(settings)) as conn:
            done = cancelling.cancel(conn, args.id, by=args.by or who())
    except UnknownMessage as exc:
        if args.json:
            print_json({"outcome": "unknown", "target": exc.target, "detail": exc.detail})
        print(f"pgqueue: error: cancel: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(done.as_dict())
    else:
        print(done)
    return EXIT_OK
