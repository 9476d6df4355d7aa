"""The parser every ``pgqueue`` command is built with: env vars, exit codes, one-line errors.

Every option (but ``--help``, ``--version`` and ``--yes``) can be given as an env var
``PGQUEUE_<OPTION>``, and its help says which. Options built from a settings model read their env
var through pydantic (their help names it already); every other option gets its env value here as
its default, converted and checked exactly as the option would be, and a bad value is one line
naming the env var. A command line option wins over its env var.

``--yes`` never comes from the environment: a variable left in a shell or a pod would confirm
every purge without anyone having typed it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_CONFIRMED = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = """exit codes:
  0    success
  1    failure: the database refused or is unreachable, a call's reply is
       not ok, a check found work to do (migrate --check), the thing named
       does not exist (dlq replay ID, cancel ID)
  2    usage error: a bad option, argument or env value (the message names it)
  3    not confirmed: a destructive command was declined, or ran without a
       terminal and without --yes
  130  interrupted (Ctrl-C)"""

_A = TypeVar("_A", bound=argparse.Action)

NO_ENV = frozenset({"--help", "--version", "--yes"})

_ENV_NOTE = re.compile(r"\(env PGQUEUE_[A-Z0-9_]+")


def env_name(option: str) -> str:
    return "PGQUEUE_" + option.lstrip("-").replace("-", "_").upper()


class FromEnv(str):
    """A default read from an env var; a type check that rejects it names the variable."""

    __slots__ = ("env",)
    env: str

    def __new__(cls, value: str, env: str) -> FromEnv:
        obj = super().__new__(cls, value)
        obj.env = env
        return obj


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def _checked(convert: Callable[[str], Any], choices: Any, env: str) -> Callable[[str], Any]:
    """The option's own conversion, plus its choices (argparse checks none on defaults)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            if isinstance(text, FromEnv):
                raise argparse.ArgumentTypeError(f"{exc} (from env {env})") from None
            raise
        if choices is not None and isinstance(text, FromEnv) and value not in choices:
            allowed = ", ".join(map(str, choices))
            raise argparse.ArgumentTypeError(
                f"must be one of {allowed}, got {text!r} (from env {env})"
            )
        return value

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps indented ones (the exit codes, examples) as written."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith(" ") for line in lines[1:]) or para.startswith(" "):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(
                    textwrap.fill(
                        " ".join(para.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_on_hyphens=False,  # never split --an-option
                    )
                )
        return "\n\n".join(out)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose options have env vars and whose help ends with the exit codes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        epilog = kwargs.pop("epilog", None)
        kwargs["epilog"] = f"{epilog}\n\n{EXIT_CODES}" if epilog else EXIT_CODES
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"pgqueue: error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def _add_action(self, action: _A) -> _A:
        # Every option passes here, also those of a mutually exclusive group (not those of an
        # argument group: the help test catches one).
        with_env(action)
        return super()._add_action(action)


def with_env(action: argparse.Action) -> None:
    """Give an option its env var: named in its help, its default when set, checked as typed."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    if (
        not longs
        or longs[0] in NO_ENV
        or isinstance(action, argparse._HelpAction | argparse._VersionAction)
    ):
        return
    env = env_name(longs[0])
    if action.help is argparse.SUPPRESS or _ENV_NOTE.search(action.help or ""):
        return  # settings fields read their env var through pydantic
    action.help = f"{(action.help or '').rstrip()} (env {env})".lstrip()
    flag = isinstance(
        action,
        argparse._StoreTrueAction | argparse._StoreFalseAction | argparse.BooleanOptionalAction,
    )
    # argparse converts a string default with the action's type, even for flags.
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    action.type = _checked(_env_bool if flag else convert, None if flag else action.choices, env)
    value = os.environ.get(env)
    if value is not None:
        action.default = FromEnv(value, env)


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("pgqueue",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command tree with its command path (for help checks, completion)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (*path, name))


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]
