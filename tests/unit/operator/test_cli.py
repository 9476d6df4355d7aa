"""Settings and the CLI: env and options, one-line errors naming the option, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pgqueue_operator import cli
from pgqueue_operator.settings import OperatorSettings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_OPERATOR_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pgqueue_operator.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_OPERATOR_NAMESPACES", "a, b,a")
    monkeypatch.setenv("PGQUEUE_OPERATOR_METRICS_PORT", "9999")
    monkeypatch.setenv("PGQUEUE_OPERATOR_LOG_FORMAT", "json")
    s = OperatorSettings()
    assert s.namespaces == ["a", "b"]
    assert s.metrics_port == 9999
    assert s.log_format == "json"
    assert s.health_port == 8080


def test_options_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_OPERATOR_NAMESPACES", "from-env")
    monkeypatch.setenv("PGQUEUE_OPERATOR_HEALTH_PORT", "8181")
    args = cli.build_parser().parse_args(
        ["run", "--namespace", "x", "--namespace", "y", "--health-port", "8282"]
    )
    s = cli.settings_from(args)
    assert s.namespaces == ["x", "y"]
    assert s.health_port == 8282


def test_every_settings_field_is_documented_with_its_default() -> None:
    for name, field in OperatorSettings.model_fields.items():
        assert field.description, name
        assert "Default" in field.description, name


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["run", "--metrics-port", "x"], {}, "--metrics-port"),
        (["run", "--namespace", "a", "--health-port", "0"], {}, "--health-port"),
        (["run", "--namespace", "a", "--log-format", "xml"], {}, "--log-format"),
        (["run"], {}, "--namespace"),
        (["run", "--namespace", "a", "--all-namespaces"], {}, "--namespace"),
        (["run", "--namespace", "Not_Valid"], {}, "--namespace"),
        (
            ["run", "--namespace", "a"],
            {"PGQUEUE_OPERATOR_METRICS_PORT": "abc"},
            "PGQUEUE_OPERATOR_METRICS_PORT",
        ),
        (["frobnicate"], {}, "frobnicate"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_option() -> None:
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    for option in (
        "--namespace",
        "--all-namespaces",
        "--metrics-port",
        "--health-port",
        "--log-format",
        "--verbose",
    ):
        assert option in proc.stdout
    assert "PGQUEUE_OPERATOR_NAMESPACES" in proc.stdout
