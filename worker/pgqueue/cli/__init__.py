"""``pgqueue``: the command line (migrate, worker, enqueue, call, cancel, stats, queue, dlq, sweep,
schedule, gate, demo, completion).

Each command group lives in its own module exposing ``register(subparsers)``; this module builds
the parser and turns every expected failure into one line on stderr and its exit code (listed at
the end of every ``--help``; see :mod:`pgqueue.cli.parsing`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

import psycopg

from pgqueue import __version__
from pgqueue.cli.common import CliError, NotConfirmed, config_error, fail
from pgqueue.cli.parsing import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_NOT_CONFIRMED, Parser
from pgqueue.errors import ConfigurationError, PgQueueError

COMMAND_MODULES: tuple[str, ...] = (
    "schema",
    "working",
    "messages",
    "cancelling",
    "queues",
    "deadletters",
    "sweeping",
    "schedule",
    "gate",
    "demo",
    "completion",
    "exporting",
    "web",
)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line (--json), for log pipelines that parse rather than grep."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pgqueue",
        description=(
            "A Postgres-native task queue with a blocking request-reply RPC. Every option (but "
            "--help and --yes) can also be set as an env var PGQUEUE_<OPTION>, named in its help; "
            "the command line wins. The database comes from --dsn or PGQUEUE_DSN. Every command "
            "that prints a result takes --json."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"pgqueue {__version__}", help="Print the version."
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Log level (default INFO).",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
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
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "json", False):
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    # "dlq purge", not just "dlq": the command as typed, for the one-line error.
    command = " ".join(
        [args.command, *(v for k, v in vars(args).items() if k.endswith("_command") and v)]
    )
    try:
        code = args.handler(args)
    except NotConfirmed as exc:
        fail(f"{command}: {exc}", code=EXIT_NOT_CONFIRMED)
    except CliError as exc:
        fail(f"{command}: {exc}")
    except ConfigurationError as exc:
        fail(f"{command}: {config_error(exc)}")
    except (PgQueueError, psycopg.Error) as exc:
        # libpq messages span lines; an operator's terminal and log get one.
        fail(
            f"{command}: {type(exc).__name__}: {' '.join(str(exc).split())}",
            code=EXIT_FAILURE,
        )
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    raise SystemExit(code or 0)


if __name__ == "__main__":
    main()
