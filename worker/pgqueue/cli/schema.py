"""``pgqueue migrate``: create or upgrade the schema, check it (``--check``), or print its SQL."""

from __future__ import annotations

import argparse

from pgqueue import migrating
from pgqueue.cli.common import CliError, add_connection, add_json, connection, print_json, via
from pgqueue.cli.parsing import EXIT_FAILURE, EXIT_OK


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="Create or upgrade the pgqueue schema (idempotent); --check or --sql to only look.",
        description=(
            "Apply the pending schema migrations, each in its own transaction with its version "
            "row, serialised by an advisory lock (every worker pod may run it at start). "
            "--check only reads: exit 1 when migrations are pending, naming them. --sql prints "
            "the SQL of the pending migrations (all of them with --sql --from 0, no database "
            "needed) for teams whose schema changes go through Alembic, Django or Flyway: it "
            "records each version in pgqueue.schema_version, so --check agrees once it has run."
        ),
        epilog=(
            "examples:\n"
            "  pgqueue migrate --check || echo 'schema behind'\n"
            "  pgqueue migrate --sql > V2__pgqueue.sql            # pending on this database\n"
            "  pgqueue migrate --sql --from 0 > pgqueue_all.sql   # every migration, offline"
        ),
    )
    add_connection(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        default=False,
        help="Change nothing; exit 1 when migrations are pending (named), 0 when current.",
    )
    mode.add_argument(
        "--sql",
        action="store_true",
        default=False,
        help="Change nothing; print the SQL the pending migrations would run.",
    )
    p.add_argument(
        "--from",
        dest="from_version",
        type=_version,
        default=None,
        metavar="VERSION",
        help=(
            "With --sql: print the migrations after this applied version without connecting "
            "(0: all of them)."
        ),
    )
    add_json(p)
    p.set_defaults(handler=cmd_migrate)


def _version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a schema version (an integer ≥ 0), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def cmd_migrate(args: argparse.Namespace) -> int:
    if args.from_version is not None and not args.sql:
        raise CliError("--from", "only goes with --sql")
    if args.sql:
        return _print_sql(args)
    conn = connection(args)
    if args.check:
        state = migrating.status(conn.dsn, **via(conn))
        if args.json:
            print_json(state.as_dict())
        elif state.up_to_date:
            print(f"schema is up to date (version {state.current})")
        else:
            names = ", ".join(m.label for m in state.pending)
            print(f"schema is behind: version {state.current}, pending {names}")
        return EXIT_OK if state.up_to_date else EXIT_FAILURE
    applied = migrating.migrate(conn.dsn, **via(conn))
    if args.json:
        state = migrating.status(conn.dsn, **via(conn))
        print_json({"applied": applied, "current": state.current})
    else:
        print(f"applied migrations {applied}" if applied else "schema is up to date")
    return EXIT_OK


def _print_sql(args: argparse.Namespace) -> int:
    if args.from_version is not None:
        pending = [m for m in migrating.known() if m.version > args.from_version]
    else:
        conn = connection(args)
        state = migrating.status(conn.dsn, **via(conn))
        pending = state.pending
    if args.json:
        print_json(
            {
                "pending": [{"version": m.version, "name": m.name} for m in pending],
                "sql": migrating.plan_sql(pending),
            }
        )
    else:
        print(migrating.plan_sql(pending), end="")
    return EXIT_OK
