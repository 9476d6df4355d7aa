"""``pgqueue sweep``: the retention job (a CronJob in Kubernetes, a timer elsewhere)."""

from __future__ import annotations

import argparse

from pgqueue import admin
from pgqueue.cli.common import (
    add_dsn,
    add_json,
    add_settings_options,
    print_json,
    settings_with_dsn,
    via,
)
from pgqueue.cli.parsing import EXIT_OK
from pgqueue.settings import SweepSettings


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
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
    settings = settings_with_dsn(SweepSettings, args)
    report = admin.sweep(
        settings.dsn,
        batch_size=settings.batch_size,
        dead_letter_retention=settings.dead_letter_retention,
        orphan_margin=settings.orphan_margin,
        **via(settings),
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
