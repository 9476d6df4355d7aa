"""What every ``pgqueue`` command shares: env-backed options, settings from options, clean errors.

Every option has an env var ``PGQUEUE_<OPTION>``; an option on the command line wins. Bad input
ends in one line naming the option and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from pgqueue.errors import ConfigurationError

S = TypeVar("S", bound=BaseSettings)

EXIT_USAGE = 2


class CliError(Exception):
    """A bad option value; printed as one line, exit code 2."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


def env_name(option: str) -> str:
    return "PGQUEUE_" + option.lstrip("-").replace("-", "_").upper()


def env_default(option: str, fallback: Any = None) -> Any:
    return os.environ.get(env_name(option), fallback)


def add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        default=None,
        help="Postgres connection string (env PGQUEUE_DSN). Never printed in logs.",
    )


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
        return model(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        source = option_of(field) if field in given else env_name(field)
        raise CliError(source, first["msg"]) from None


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


def dsn_of(args: argparse.Namespace) -> str:
    dsn = args.dsn or os.environ.get("PGQUEUE_DSN", "")
    if not dsn:
        raise CliError("--dsn", "no database given (set PGQUEUE_DSN or pass --dsn)")
    return str(dsn)


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
