"""``pgqueue``: the command line (migrate, worker, enqueue, call, stats, dlq, sweep, gate, demo).

Each command group lives in its own module exposing ``register(subparsers)``; this module builds
the parser and turns every expected failure into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

import psycopg

from pgqueue.cli.common import CliError, config_error, fail
from pgqueue.errors import ConfigurationError, PgQueueError

COMMAND_MODULES: tuple[str, ...] = ("queueing", "working", "demo", "gate", "bench")
COMMAND_MODULES += ("exporting",)
COMMAND_MODULES += ("web",)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pgqueue",
        description=(
            "A Postgres-native task queue with a blocking request-reply RPC. Every option can also "
            "be set as an env var PGQUEUE_<OPTION>; the database comes from --dsn or PGQUEUE_DSN."
        ),
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Log level (default INFO).",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"pgqueue.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pgqueue.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = args.handler(args)
    except CliError as exc:
        fail(f"{args.command}: {exc}")
    except ConfigurationError as exc:
        fail(f"{args.command}: {config_error(exc)}")
    except (PgQueueError, psycopg.Error) as exc:
        # libpq messages span lines; an operator's terminal and log get one.
        fail(f"{args.command}: {type(exc).__name__}: {' '.join(str(exc).split())}", code=1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


if __name__ == "__main__":
    main()
