"""What every ``pgqueue`` command shares: connection options, settings from options, JSON output,
confirmation of destructive commands, clean errors.

Every option has an env var ``PGQUEUE_<OPTION>`` (see :mod:`pgqueue.cli.parsing`); an option on
the command line wins. Bad input ends in one line naming the option and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypedDict, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from pgqueue import db, pausing
from pgqueue.cli.parsing import EXIT_USAGE, env_name
from pgqueue.errors import ConfigurationError
from pgqueue.settings import ConnectionSettings, check_queue_name

S = TypeVar("S", bound=BaseSettings)
C = TypeVar("C", bound=ConnectionSettings)


class CliError(Exception):
    """A bad option value; printed as one line, exit code 2."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


class NotConfirmed(Exception):
    """A destructive command was declined, or had no terminal to ask on and no --yes; exit 3."""


def add_connection(parser: argparse.ArgumentParser) -> None:
    """--dsn, --pooled, --connect-timeout, ... (the ConnectionSettings fields, env PGQUEUE_*)."""
    add_dsn(parser)
    add_settings_options(parser, ConnectionSettings, skip={"dsn"})


def add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        default=None,
        help="Postgres connection string or URI (env PGQUEUE_DSN). Never printed.",
    )


def connection(args: argparse.Namespace) -> ConnectionSettings:
    """The connection settings of a command: its options over PGQUEUE_* env vars; a DSN given."""
    return settings_with_dsn(ConnectionSettings, args)


def settings_with_dsn(model: type[C], args: argparse.Namespace) -> C:
    """A command's settings (``build_settings``) when it needs a database: a DSN given."""
    settings = build_settings(model, args)
    if not settings.dsn:
        raise CliError("--dsn", "no database given (set PGQUEUE_DSN or pass --dsn)")
    return settings


class Via(TypedDict):
    """How a command's connections are opened: the keywords every pgqueue entry point takes."""

    pooled: bool
    connect_timeout: float


def via(conn: ConnectionSettings) -> Via:
    """``**via(conn)``: the command's pooled and connect_timeout, passed on to what it calls."""
    return Via(pooled=conn.pooled, connect_timeout=conn.connect_timeout)


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument(
        "--json", action="store_true", default=False, help=f"Print {what} as one JSON document."
    )


def print_json(document: Any) -> None:
    print(json.dumps(document, default=str, ensure_ascii=False))


def print_rows(
    rows: list[dict[str, Any]], columns: list[str], *, as_json: bool, empty: str
) -> None:
    """A list command's output: the rows as JSON (``--json``), else a table, else ``empty``."""
    if as_json:
        print_json(rows)
    elif not rows:
        print(empty)
    else:
        print(table(rows, columns))


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help=(
            "Do it without asking. Needed when stdin is not a terminal (scripts, CI, cron); never "
            "read from the environment."
        ),
    )


def confirm(
    args: argparse.Namespace, question: str, detail: Callable[[], str] | None = None
) -> None:
    """Ask on a terminal (default no); without one, only --yes lets a destructive command run.

    ``detail`` phrases the question with something worth a query (how many rows), run only
    when there is someone to ask.
    """
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise NotConfirmed(
            f"{question.rstrip('?')}: refused without --yes (stdin is not a terminal to ask on)"
        )
    if detail is not None:
        question = detail()
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in {"y", "yes"}:
        raise NotConfirmed("not confirmed; nothing was changed")


def option_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_settings_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    skip: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """One option per settings field, its help the field's documentation and env var."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        annotation = field.annotation
        kind = "FLAG" if annotation is bool else "LIST" if "list" in str(annotation) else "VALUE"
        help_text = f"{field.description or ''} (env {env_name(name)})"
        if kind == "FLAG":
            parser.add_argument(
                option_of(name),
                dest=name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            parser.add_argument(
                option_of(name),
                dest=name,
                default=None,
                metavar=name.upper(),
                help=help_text + (" Comma-separated." if kind == "LIST" else ""),
            )


def build_settings(model: type[S], args: argparse.Namespace) -> S:
    """Settings from env, overridden by the options given; errors name the option."""
    given = {
        name: getattr(args, name)
        for name in model.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        settings = model(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        source = option_of(field) if field in given else env_name(field)
        raise CliError(source, first["msg"]) from None
    if isinstance(settings, ConnectionSettings):
        db.use_defaults(settings)  # the command's options bound every connection it opens
    return settings


def parse_json(option: str, text: str | None, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(option, f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, kind):
        want = "a JSON array" if kind is list else "a JSON object"
        raise CliError(option, f"must be {want}, got {type(value).__name__}")
    return value


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"pgqueue: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def config_error(exc: ConfigurationError) -> CliError:
    return CliError(option_of(exc.field), exc.problem)


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (underscores allowed: 50_000)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def seconds(text: str, *, allow_zero: bool = False) -> float:
    """argparse type: a finite number of seconds, > 0 (or ≥ 0 with allow_zero)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"must be {bound} seconds, got {text}")
    return value


def non_negative_seconds(text: str) -> float:
    return seconds(text, allow_zero=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned table, headers upper-cased (what ``kubectl get`` users expect)."""
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def who() -> str:
    """user@host of whoever runs the command, recorded with flags and purges."""
    return f"cli {pausing.user_at_host()}"


def queue_name(text: str) -> str:
    """argparse type: a valid queue name."""
    try:
        return check_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
