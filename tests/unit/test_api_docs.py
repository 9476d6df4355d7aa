"""The API reference (``make docs``, hack/apidocs.py) builds from the docstrings without a warning
or a reference that leads nowhere; and the check does catch a broken reference."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import pgqueue

REPO = Path(__file__).resolve().parents[2]


def _apidocs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("apidocs", REPO / "hack" / "apidocs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_builds_clean(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "hack" / "apidocs.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "pgqueue.html").read_text()
    for name in pgqueue.__all__:
        assert f'id="{name}"' in page or (tmp_path / "pgqueue" / f"{name}.html").exists(), name
    # Roles render as links, not as Sphinx markup.
    assert ":class:" not in page
    assert ":meth:" not in page
    # Every public method and property of an exported class is on its page, wherever in pgqueue
    # it is defined (a member inherited from an internal base class would silently drop out).
    missing = [
        f"{name}.{member}"
        for name, member in public_members()
        if f'id="{name}.{member}"' not in page
    ]
    assert not missing, f"public members missing from the API reference: {missing}"


def public_members() -> list[tuple[str, str]]:
    """(class, member) for each public method or property pgqueue defines on an exported class."""
    found = []
    for name in pgqueue.__all__:
        cls = getattr(pgqueue, name)
        if not inspect.isclass(cls):
            continue
        for member in dir(cls):
            if member.startswith("_"):
                continue
            owner = next(k for k in cls.__mro__ if member in vars(k))
            value = vars(owner)[member]
            if owner.__module__.startswith("pgqueue") and (
                inspect.isfunction(value) or isinstance(value, property)
            ):
                found.append((name, member))
    return found


def test_a_broken_reference_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs_probe.py").write_text(
        textwrap.dedent('''
        """Probe: see :class:`pgqueue.NoSuchThing` and ``pgqueue.nowhere``; :class:`Fine` is."""


        class Fine:
            """A documented class; see :meth:`Fine.gone` too."""
        ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = _apidocs().build(tmp_path / "out", ["docs_probe"])
    assert problems == [
        "docs_probe.html: unresolved reference 'Fine.gone'",
        "docs_probe.html: unresolved reference 'pgqueue.NoSuchThing'",
        "docs_probe.html: unresolved reference 'pgqueue.nowhere'",
    ]
