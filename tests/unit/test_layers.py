"""The layers import-linter cannot see: tests use public names, and § citations land somewhere.

``lint-imports`` (``make lint``) checks which package imports which. Two rules of the same house
are checked here instead: a test imports no name starting with ``_`` from ``pgqueue`` or
``pgqueue_operator`` (what a test needs is exposed, not reached into), and every ``§N`` a
comment or docstring cites is a numbered heading of docs/architecture.md, so a reader who follows
a citation finds the section it means.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
OUR_PACKAGES = ("pgqueue", "pgqueue_operator")
CITING = ("worker", "operator", "charts", "crds", "tests")

# "DESIGN §3.4–3.9", "architecture §5", "(§3.7, §3.9)": a number, maybe a range.
CITATION = re.compile(r"§(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?")
HEADING = re.compile(r"^#{1,6}\s+§(\d+(?:\.\d+)?)\b", re.MULTILINE)


def _private(name: str) -> bool:
    """``_x`` is private; ``__x__`` (a dunder, e.g. ``__version__``) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _ours(module: str) -> bool:
    return module.partition(".")[0] in OUR_PACKAGES


def private_imports(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each import of a private name or module of our packages."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not _ours(node.module):
                continue
            if any(_private(part) for part in node.module.split(".")):
                yield node.lineno, f"from {node.module} import ..."
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name) and any(_private(p) for p in alias.name.split(".")):
                    yield node.lineno, f"import {alias.name}"


def test_the_private_import_check_sees_what_it_must() -> None:
    source = (
        "from pgqueue.supervisor import _Pending, Worker\n"
        "from pgqueue_operator._core import thing\n"
        "import pgqueue._internal\n"
        "from pgqueue import __version__\n"
        "from other import _private\n"
    )
    assert [what for _, what in private_imports(source)] == [
        "from pgqueue.supervisor import _Pending",
        "from pgqueue_operator._core import ...",
        "import pgqueue._internal",
    ]


def test_no_test_imports_a_private_name() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line, what in private_imports(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        "tests reach into internals; expose what they need instead:\n" + "\n".join(offenders)
    )


def sections() -> set[str]:
    return set(HEADING.findall(ARCHITECTURE.read_text(encoding="utf-8")))


def cited(start: str, end: str | None) -> list[str]:
    """The sections a citation names: ``3.4–3.9`` is 3.4, 3.5, …, 3.9."""
    if end is None:
        return [start]
    if "." in start and "." not in end:
        end = f"{start.partition('.')[0]}.{end}"  # "§3.4–9"
    (major, _, low), (end_major, _, high) = start.partition("."), end.partition(".")
    if low and high and major == end_major and int(low) <= int(high):
        return [f"{major}.{n}" for n in range(int(low), int(high) + 1)]
    if not low and not high and int(major) <= int(end_major):
        return [str(n) for n in range(int(major), int(end_major) + 1)]
    return [start, end]


def citations() -> Iterator[tuple[str, str]]:
    """(where, section) for every § citation under the citing folders."""
    this = Path(__file__).resolve()
    for folder in CITING:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.resolve() == this:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # images and other binaries cite nothing
            for lineno, line in enumerate(text.splitlines(), 1):
                for match in CITATION.finditer(line):
                    for section in cited(match.group(1), match.group(2)):
                        yield f"{path.relative_to(ROOT)}:{lineno}", section


def test_citation_ranges_expand() -> None:
    assert cited("3.4", "3.9") == ["3.4", "3.5", "3.6", "3.7", "3.8", "3.9"]
    assert cited("3.4", "9") == ["3.4", "3.5", "3.6", "3.7", "3.8", "3.9"]
    assert cited("3", "7") == ["3", "4", "5", "6", "7"]
    assert cited("5", None) == ["5"]


def test_every_section_citation_lands_on_a_heading_of_the_architecture() -> None:
    found = list(citations())
    assert found, "no § citation found: the scan is looking in the wrong place"
    known = sections()
    dangling = [f"{where}: §{section}" for where, section in found if section not in known]
    assert not dangling, f"no heading in {ARCHITECTURE.relative_to(ROOT)} for:\n" + "\n".join(
        dangling
    )
