"""Loads the named SQL queries from the ``.sql`` files shipped in :mod:`pgqueue.sql`.

All SQL lives in files so that it can be read, reviewed and EXPLAINed on its own; code refers to a
query by name only. Files are parsed once per process.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[a-z0-9_]+)\s*$", re.MULTILINE)


def parse_named(text: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME`` entries into {name: statement}."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r}")
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


@functools.cache
def queries() -> dict[str, str]:
    """Every named query of ``queries.sql``."""
    text = resources.files("pgqueue.sql").joinpath("queries.sql").read_text("utf-8")
    return parse_named(text)


@functools.cache
def query(name: str) -> sql.SQL:
    """One named query, ready for ``cursor.execute``."""
    try:
        return sql.SQL(queries()[name])
    except KeyError:
        raise KeyError(f"no query named {name!r} in queries.sql") from None


def schema() -> str:
    """The canonical schema (``schema.sql``)."""
    return resources.files("pgqueue.sql").joinpath("schema.sql").read_text("utf-8")


def migrations() -> list[tuple[int, str, str]]:
    """Ordered migrations as (version, name, sql), from files named ``NNNN_name.sql``."""
    found: list[tuple[int, str, str]] = []
    folder = resources.files("pgqueue.sql.migrations")
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..N without gaps, found {versions}")
    return found
