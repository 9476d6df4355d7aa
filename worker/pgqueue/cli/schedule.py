"""``pgqueue schedule list``: the periodic schedules, their next run and the last tick fired.

Schedules come from two places: the ``--tasks`` modules named (imported here, as a worker would,
so their ``@periodic`` decorators register), and the tick table, which remembers every schedule
that ever fired with the cron expression and zone it fired under. A schedule only in the code has
not fired yet; one only in the table is no longer in the modules named (or none were named).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pgqueue import ticking
from pgqueue.cli.common import (
    CliError,
    add_connection,
    add_json,
    connection,
    print_json,
    table,
    via,
)
from pgqueue.cli.parsing import EXIT_OK
from pgqueue.cron import Cron
from pgqueue.errors import PgQueueError, TaskRegistrationError
from pgqueue.periodic import schedules
from pgqueue.tasks import import_task_modules

_COLUMNS = [
    "schedule",
    "task",
    "cron",
    "tz",
    "queue",
    "catch_up",
    "next_run",
    "last_tick",
    "msg_id",
]


def _modules(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser(
        "schedule", help="Periodic schedules (@pgqueue.periodic): list them and their next run."
    )
    ssub = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    p = ssub.add_parser(
        "list",
        help="Each schedule with its next run and the last tick fired.",
        description="Each periodic schedule with its cron expression, zone, queue, catch-up "
        "policy, next run and last tick fired (times in UTC, ISO-8601) and that tick's msg_id. "
        "Schedules come from the --tasks modules (imported, as a worker does) and from the tick "
        "table, which remembers every schedule that fired; catch_up is only known from the code "
        "('-' otherwise).",
    )
    p.add_argument(
        "--tasks",
        type=_modules,
        default=[],
        metavar="MODULES",
        help="Modules to import for their @periodic schedules, comma-separated (the worker's "
        "--tasks). Default: none, only schedules that fired.",
    )
    add_connection(p)
    add_json(p, "the schedules")
    p.set_defaults(handler=cmd_schedule_list)


def cmd_schedule_list(args: argparse.Namespace) -> int:
    conn = connection(args)
    try:
        import_task_modules(args.tasks)
    except TaskRegistrationError as exc:
        raise CliError("--tasks", str(exc)) from None
    fired = ticking.last_ticks(conn.dsn, **via(conn))
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for key, known in sorted(schedules().items()):
        last = fired.get(key)
        nxt = known.cron.next_after(now)
        rows.append(
            {
                **known.as_dict(),
                "next_run": nxt.isoformat() if nxt else None,
                "last_tick": last["tick_at"].astimezone(UTC).isoformat() if last else None,
                "msg_id": last["msg_id"] if last else None,
                "source": "tasks",
            }
        )
    for key, last in sorted(fired.items()):
        if key in schedules():
            continue
        try:
            nxt = Cron.parse(last["cron"], last["tz"]).next_after(now)
        except PgQueueError:
            nxt = None
        rows.append(
            {
                "schedule": key,
                "task": last["task_name"],
                "cron": last["cron"],
                "tz": last["tz"],
                "queue": last["queue"],
                "catch_up": None,
                "next_run": nxt.isoformat() if nxt else None,
                "last_tick": last["tick_at"].astimezone(UTC).isoformat(),
                "msg_id": last["msg_id"],
                "source": "ticks",
            }
        )
    if args.json:
        print_json(rows)
    elif not rows:
        print("no schedules: none fired yet, and no --tasks module declares one")
    else:
        shown = [{c: "-" if r[c] is None else r[c] for c in _COLUMNS} for r in rows]
        print(table(shown, _COLUMNS))
    return EXIT_OK
