"""The layers import-linter cannot see: tests use public names, and § citations land somewhere.

``lint-imports`` (``make lint``) checks which package imports which. Two rules of the same house
are checked here instead: tests go through public surfaces (no test imports a name starting with
``_``, from anywhere, nor reads or calls an ``_``-prefixed attribute of an object other than its
own ``self``/``cls``: what a test needs is exposed, not reached into), and every ``§N`` a comment
or docstring cites is a numbered heading of docs/architecture.md, so a reader who follows a
citation finds the section it means.
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
CITING = ("worker", "operator", "charts", "crds", "tests")

# "DESIGN §3.4–3.9", "architecture §5", "(§3.7, §3.9)": a number, maybe a range.
CITATION = re.compile(r"§(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?")
HEADING = re.compile(r"^#{1,6}\s+§(\d+(?:\.\d+)?)\b", re.MULTILINE)


def _private(name: str) -> bool:
    """``_x`` is private; ``__x__`` (a dunder, e.g. ``__version__``) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each import of a private name or module, whoever's it is."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if any(_private(part) for part in module.split(".") if part):
                yield node.lineno, f"from {module} import ..."
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {module} import {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(p) for p in alias.name.split(".")):
                    yield node.lineno, f"import {alias.name}"


# Private attributes a test may use, each with the reason no public surface can serve.
ALLOWED_PRIVATE_ATTRIBUTES = {
    "os._exit": "a forked child must leave without running the parent's cleanup (atexit, pytest)",
}


def private_attributes(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each use of an ``_``-prefixed attribute of something other than
    ``self`` or ``cls`` (a class in the tests may use its own)."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        what = ast.unparse(node)
        if what not in ALLOWED_PRIVATE_ATTRIBUTES:
            yield node.lineno, what


def test_the_private_import_check_sees_what_it_must() -> None:
    source = (
        "from pgqueue.supervisor import _Pending, Worker\n"
        "from pgqueue_operator._core import thing\n"
        "import pgqueue._internal\n"
        "from pgqueue import __version__\n"
        "from other import _private\n"
        "from .sibling import _helper, public\n"
        "from devtools.kubeapi import ManagedProcess as _Proc\n"
    )
    assert [what for _, what in private_imports(source)] == [
        "from pgqueue.supervisor import _Pending",
        "from pgqueue_operator._core import ...",
        "import pgqueue._internal",
        "from other import _private",
        "from .sibling import _helper",
    ]


def test_the_private_attribute_check_sees_what_it_must() -> None:
    source = (
        "worker._next_poll(1.0)\n"
        "assert gate._conn is None\n"
        "counter.labels('a')._value.get()\n"
        "self._log.close()\n"
        "cls._instances.clear()\n"
        "type(x).__name__\n"
        "os._exit(0)\n"
    )
    assert [what for _, what in private_attributes(source)] == [
        "worker._next_poll",
        "gate._conn",
        "counter.labels('a')._value",
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


def test_no_test_reads_a_private_attribute() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line, what in private_attributes(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        "tests reach into internals; expose what they need (a read-only property, a stats "
        "method, an injectable clock) or list it in ALLOWED_PRIVATE_ATTRIBUTES with a reason:\n"
        + "\n".join(offenders)
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


def test_no_module_of_the_two_packages_is_over_400_lines() -> None:
    """The house (issue 15): a module holds one concept; past ~400 lines it holds two."""
    root = Path(__file__).resolve().parents[2]
    sizes = {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for package in ("worker/pgqueue", "operator/pgqueue_operator")
        for path in (root / package).rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 400} == {}
