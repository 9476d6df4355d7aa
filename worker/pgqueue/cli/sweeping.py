"""``pgqueue sweep``: the retention job (a CronJob in Kubernetes, a timer elsewhere)."""

from __future__ import annotations

import argparse

from pgqueue import admin
from pgqueue.cli.common import (
    CliError,
    add_dsn,
    add_json,
    add_settings_options,
    build_settings,
    print_json,
)
from pgqueue.cli.parsing import EXIT_OK
from pgqueue.settings import SweepSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sweep",
        help="Dead-letter orphaned calls; delete expired replies and aged dead letters.",
        description=(
            "The retention job, in short batches (one statement and transaction each, safe "
            "behind a transaction pooler with --pooled). First, orphaned calls: a call whose "
            "caller's deadline passed more than --orphan-margin seconds ago and that no worker "
            "holds (a queue nobody consumes, such as a typo in queue=, or every worker gone) "
            "moves to the dead-letter table with a reason naming its queue and deadline. Then "
            "replies past their expiry and dead letters older than --dead-letter-retention are "
            "deleted."
        ),
    )
    add_dsn(p)
    add_settings_options(p, SweepSettings, skip={"dsn"})
    add_json(p, "the counts")
    p.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    settings = build_settings(SweepSettings, args)
    if not settings.dsn:
        raise CliError("--dsn", "no database given (set PGQUEUE_DSN or pass --dsn)")
    report = admin.sweep(
        settings.dsn,
        batch_size=settings.batch_size,
        dead_letter_retention=settings.dead_letter_retention,
        orphan_margin=settings.orphan_margin,
        pooled=settings.pooled,
        connect_timeout=settings.connect_timeout,
    )
    if args.json:
        print_json(report.as_dict())
    else:
        print(
            f"swept {report.results_deleted} expired replies and "
            f"{report.dead_letters_deleted} aged dead letters; "
            f"{report.orphans_dead_lettered} orphaned calls dead-lettered"
        )
    return EXIT_OK
