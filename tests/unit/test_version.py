"""One version, from one place: worker/pgqueue/_version.py, as the installed metadata, the package
and both command lines report it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml

import pgqueue
from pgqueue.cli import main as pgqueue_main
from pgqueue_operator.cli import main as operator_main

ROOT = Path(__file__).resolve().parents[2]


def version_file() -> str:
    """The version as worker/pgqueue/_version.py spells it (read as text: the module is private)."""
    text = (ROOT / "worker" / "pgqueue" / "_version.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    assert match, "worker/pgqueue/_version.py has no __version__ line"
    return match.group(1)


def test_the_version_lives_in_one_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "pgqueue._version.__version__"}
    assert pgqueue.__version__ == version_file()
    assert importlib.metadata.version("pgqueue") == version_file()


@pytest.mark.parametrize(
    ("main", "prog"), [(pgqueue_main, "pgqueue"), (operator_main, "pgqueue-operator")]
)
def test_both_commands_print_the_version(
    main: Callable[[Sequence[str] | None], None], prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"{prog} {pgqueue.__version__}\n"


def test_the_chart_deploys_this_version() -> None:
    # Helm reads the app version from Chart.yaml itself: this copy must follow the one place.
    chart = yaml.safe_load((ROOT / "charts" / "pgqueue-operator" / "Chart.yaml").read_text())
    assert chart["appVersion"] == version_file()
