"""Every ``pgqueue`` command's --help ends with the exit codes and names each option's env var.

The lines that matter (each command's exit-code block and its option → env var pairs) are compared
with tests/unit/snapshots/cli_help.txt, so renaming an option, an env var or an exit code fails
here until the snapshot is regenerated on purpose: UPDATE_SNAPSHOTS=1 pytest this file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from pgqueue.cli import build_parser
from pgqueue.cli.parsing import EXIT_CODES, NO_ENV, env_name, options, subcommands, walk

SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_help.txt"


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    for name in list(os.environ):
        if name.startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
    return build_parser()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _env_of(action: argparse.Action) -> str | None:
    long = next(s for s in action.option_strings if s.startswith("--"))
    if long in NO_ENV or action.dest == "help":
        return None
    return env_name(long)


def render(parser: argparse.ArgumentParser) -> str:
    """The snapshot: per command, whether its help ends with the exit codes, and each option's
    env var as its help prints it."""
    lines = []
    for path, sub in walk(parser):
        help_text = sub.format_help()
        flat = _flat(help_text)
        ends = help_text.rstrip().endswith(EXIT_CODES.splitlines()[-1].strip())
        lines.append(f"{' '.join(path)}: exit codes {'at end' if ends else 'MISSING'}")
        for action in options(sub):
            env = _env_of(action)
            long = next(s for s in action.option_strings if s.startswith("--"))
            if env is None:
                lines.append(f"  {long}: no env var")
            else:
                shown = f"(env {env})" in flat
                lines.append(f"  {long}: {env}{'' if shown else ' NOT IN HELP'}")
    return "\n".join(lines) + "\n"


def test_every_help_ends_with_the_exit_codes(parser: argparse.ArgumentParser) -> None:
    block = _flat(EXIT_CODES)
    for path, sub in walk(parser):
        assert _flat(sub.format_help()).endswith(block), " ".join(path)


def test_every_option_names_its_env_var(parser: argparse.ArgumentParser) -> None:
    missing = []
    for path, sub in walk(parser):
        flat = _flat(sub.format_help())
        for action in options(sub):
            env = _env_of(action)
            if env is not None and f"(env {env})" not in flat:
                missing.append(f"{' '.join(path)} {action.option_strings[-1]}")
    assert missing == []


def test_every_command_that_prints_a_result_takes_json(parser: argparse.ArgumentParser) -> None:
    # demo is a guided tour for people, bench writes results.json, completion prints a script.
    exempt = {"demo", "bench", "completion"}
    lacking = [
        " ".join(path)
        for path, sub in walk(parser)
        if len(path) > 1
        and path[1] not in exempt
        and not subcommands(sub)
        and "--json" not in [s for a in options(sub) for s in a.option_strings]
    ]
    assert lacking == []


def test_help_snapshot(parser: argparse.ArgumentParser) -> None:
    current = render(parser)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.read_text() == current, (
        "the --help exit-code or env-var lines changed; if on purpose, regenerate with "
        "UPDATE_SNAPSHOTS=1 pytest tests/unit/test_cli_help.py"
    )


@pytest.mark.parametrize(
    ("argv", "env", "dest", "value"),
    [
        (["dlq", "list"], {"PGQUEUE_LIMIT": "7"}, "limit", 7),
        (["dlq", "list", "--limit", "3"], {"PGQUEUE_LIMIT": "7"}, "limit", 3),
        (["stats"], {"PGQUEUE_JSON": "true"}, "json", True),
        (["stats"], {"PGQUEUE_JSON": "0"}, "json", False),
        (["queue", "show", "q"], {"PGQUEUE_STATE": "delayed"}, "state", "delayed"),
        (["--log-level", "DEBUG", "stats"], {}, "log_level", "DEBUG"),
        (["stats"], {"PGQUEUE_LOG_LEVEL": "ERROR"}, "log_level", "ERROR"),
        (["call", "t"], {"PGQUEUE_TIMEOUT": "2.5"}, "timeout", 2.5),
    ],
)
def test_env_vars_set_options_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], dest: str, value: object
) -> None:
    for name in list(os.environ):
        if name.startswith("PGQUEUE_"):
            monkeypatch.delenv(name)
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    assert getattr(build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["dlq", "list"], {"PGQUEUE_LIMIT": "zero"}),
        (["dlq", "list"], {"PGQUEUE_LIMIT": "0"}),
        (["stats"], {"PGQUEUE_JSON": "perhaps"}),
        (["queue", "show", "q"], {"PGQUEUE_STATE": "gone"}),
        (["queue", "show", "q"], {"PGQUEUE_AFTER": "-1"}),
    ],
)
def test_a_bad_env_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
) -> None:
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert next(iter(env)) in err[0]


def test_yes_is_never_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_YES", "true")
    assert build_parser().parse_args(["dlq", "purge"]).yes is False


def test_docs_cover_every_command(parser: argparse.ArgumentParser) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    missing = []
    for path, _sub in walk(parser):
        if len(path) == 1:
            continue
        name = " ".join(path)
        parent = " ".join(path[:-1])
        # "pgqueue dlq list | replay ID | purge" documents all three in one heading.
        if f"`{name}" not in docs and not (f"`{parent} " in docs and f"| {path[-1]}" in docs):
            missing.append(name)
    assert missing == []
