"""Commands over the queue tables: migrate, enqueue, call, stats, dlq, sweep."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pgqueue import admin
from pgqueue.cli.common import (
    CliError,
    add_dsn,
    add_settings_options,
    build_settings,
    dsn_of,
    env_default,
    non_negative_seconds,
    parse_json,
    positive_int,
    seconds,
)
from pgqueue.client import Client
from pgqueue.migrating import migrate
from pgqueue.settings import ClientSettings, SweepSettings, check_queue_name


def _queue(text: str) -> str:
    try:
        return check_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer 1..10, got {text!r}") from None
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be 1..10, got {value}")
    return value


def _message_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="Task name, e.g. demo.echo.")
    p.add_argument(
        "--queue",
        type=_queue,
        default=env_default("--queue", "default"),
        help="Queue name (env PGQUEUE_QUEUE; default 'default').",
    )
    p.add_argument(
        "--args", default=None, help="Positional arguments as a JSON array, e.g. '[1, \"a\"]'."
    )
    p.add_argument("--kwargs", default=None, help="Keyword arguments as a JSON object.")
    p.add_argument(
        "--priority",
        type=_priority,
        default=env_default("--priority", 5),
        help="1 (lowest) to 10 (highest) (env PGQUEUE_PRIORITY; default 5).",
    )
    p.add_argument(
        "--tenant",
        default=env_default("--tenant", ""),
        help="Fairness key: one tenant's backlog cannot starve another's (env PGQUEUE_TENANT).",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate", help="Create or upgrade the pgqueue schema (idempotent).")
    add_dsn(p)
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("enqueue", help="Put one fire-and-forget message on a queue; prints msg_id.")
    add_dsn(p)
    _message_options(p)
    p.add_argument(
        "--delay",
        type=non_negative_seconds,
        default=0.0,
        help="Seconds before it becomes visible (default 0).",
    )
    p.set_defaults(handler=cmd_enqueue)

    p = sub.add_parser(
        "call",
        help="Run a task and wait for its reply; prints the result as JSON, exit 0 only when ok.",
    )
    add_dsn(p)
    _message_options(p)
    p.add_argument(
        "--timeout",
        type=seconds,
        default=env_default("--timeout", 30.0),
        help="Seconds to wait for the reply (env PGQUEUE_TIMEOUT; default 30).",
    )
    p.set_defaults(handler=cmd_call)

    p = sub.add_parser(
        "stats", help="Per queue: ready, in flight, delayed, dead-lettered, oldest ready age."
    )
    add_dsn(p)
    p.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    p.set_defaults(handler=cmd_stats)

    dlq = sub.add_parser("dlq", help="Dead letters: list, replay, purge.")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    p = dsub.add_parser("list", help="List dead letters with their reasons.")
    add_dsn(p)
    p.add_argument("--queue", type=_queue, default=None, help="Only this queue.")
    p.add_argument(
        "--limit", type=positive_int, default=100, help="At most this many (default 100)."
    )
    p.add_argument("--json", action="store_true", help="Print JSON lines instead of a table.")
    p.set_defaults(handler=cmd_dlq_list)
    p = dsub.add_parser("replay", help="Put a dead letter back on its queue as a fresh message.")
    add_dsn(p)
    p.add_argument("dl_id", type=positive_int, help="The dead letter's id (from dlq list).")
    p.set_defaults(handler=cmd_dlq_replay)
    p = dsub.add_parser("purge", help="Delete dead letters (all, or one queue's).")
    add_dsn(p)
    p.add_argument("--queue", type=_queue, default=None, help="Only this queue.")
    p.set_defaults(handler=cmd_dlq_purge)

    p = sub.add_parser(
        "sweep", help="Delete expired replies and aged dead letters in batches (the retention job)."
    )
    add_settings_options(p, SweepSettings, skip={"pooled", "connect_timeout"})
    p.set_defaults(handler=cmd_sweep)


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate(dsn_of(args))
    print(f"applied migrations {applied}" if applied else "schema is up to date")
    return 0


def _client(args: argparse.Namespace) -> Client:
    return Client(dsn_of(args), ClientSettings())


def cmd_enqueue(args: argparse.Namespace) -> int:
    call_args = parse_json("--args", args.args, list)
    kwargs = parse_json("--kwargs", args.kwargs, dict)
    with _client(args) as client:
        msg_id = client.enqueue(
            args.task,
            call_args,
            kwargs,
            queue=args.queue,
            priority=int(args.priority),
            tenant=args.tenant,
            delay=args.delay,
        )
    print(msg_id)
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    call_args = parse_json("--args", args.args, list)
    kwargs = parse_json("--kwargs", args.kwargs, dict)
    timeout = float(args.timeout)
    if timeout <= 0:
        raise CliError("--timeout", f"must be > 0 seconds, got {timeout:g}")
    with _client(args) as client:
        result = client.call(
            args.task,
            call_args,
            kwargs,
            queue=args.queue,
            timeout=timeout,
            priority=int(args.priority),
            tenant=args.tenant,
        )
    print(result.to_json())
    return 0 if result.ok else 1


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    stats = [s.as_dict() for s in admin.queue_stats(dsn_of(args))]
    if args.json:
        print(json.dumps(stats))
    elif not stats:
        print("no queues have messages or dead letters")
    else:
        print(_table(stats, ["queue", "ready", "in_flight", "delayed", "dead", "oldest_age"]))
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    letters = admin.dead_letters(dsn_of(args), queue=args.queue, limit=args.limit)
    if args.json:
        for letter in letters:
            print(json.dumps(letter.as_dict()))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    rows = [letter.as_dict() for letter in letters]
    print(_table(rows, ["dl_id", "queue", "task", "read_ct", "failed_at", "reason"]))
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    msg_id = admin.replay_dead_letter(dsn_of(args), args.dl_id)
    if msg_id is None:
        print(f"pgqueue: error: dlq replay: no dead letter with id {args.dl_id}", file=sys.stderr)
        return 1
    print(f"dead letter {args.dl_id} replayed as msg_id {msg_id}")
    return 0


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    purged = admin.purge_dead_letters(dsn_of(args), queue=args.queue)
    print(f"purged {purged} dead letters")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    settings = build_settings(SweepSettings, args)
    if not settings.dsn:
        raise CliError("--dsn", "no database given (set PGQUEUE_DSN or pass --dsn)")
    report = admin.sweep(
        settings.dsn,
        batch_size=settings.batch_size,
        dead_letter_retention=settings.dead_letter_retention,
    )
    print(
        f"swept {report.results_deleted} expired replies and "
        f"{report.dead_letters_deleted} aged dead letters"
    )
    return 0
