"""Build the API reference from the docstrings (pdoc) and fail on anything that would mislead.

``make docs`` runs it into docs/api/html/ (not committed: it is generated, and checked instead);
a unit test runs it into a temporary folder. It documents the public surface, ``pgqueue`` as its
``__all__`` lists it (``pgqueue.admin`` included); the internal modules are not part of it.

Fails (exit 1, one line per problem) on a warning while importing or rendering, and on a broken
reference: a code span naming ``pgqueue.<something>`` or a Sphinx role (:class:`X`, :meth:`X.y`)
whose target pdoc cannot link to a documented object. Roles are rendered as links (pdoc itself
leaves them as text).
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pdoc
import pdoc.docstrings
import pdoc.render

MODULES = ("pgqueue",)
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")
# A code span that pdoc did not turn into a link: <code>name</code> with no <a> inside.
UNLINKED = re.compile(r"<code>([A-Za-z_][\w.]*)(?:\(\))?</code>")


def build(out: Path, modules: Sequence[str] = MODULES) -> list[str]:
    """Render ``modules`` into ``out``; return the problems found (none: the docs are sound)."""
    role_targets: set[str] = set()
    plain_rst = pdoc.docstrings.rst

    def rst_with_roles(contents: str, source_file: Path | None) -> str:
        def as_code(match: re.Match[str]) -> str:
            role_targets.add(match.group(1))
            return f"``{match.group(1)}``"

        return plain_rst(ROLE.sub(as_code, contents), source_file)

    problems: list[str] = []
    pdoc.docstrings.rst = rst_with_roles
    pdoc.docstrings.convert.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pdoc.render.configure(docformat="restructuredtext", show_source=False)
            pdoc.pdoc(*modules, output_directory=out)
        problems += [f"warning: {w.category.__name__}: {w.message}" for w in caught]
    finally:
        pdoc.docstrings.rst = plain_rst
    for page in sorted(out.rglob("*.html")):
        for match in UNLINKED.finditer(page.read_text()):
            name = html.unescape(match.group(1))
            if name in role_targets or name.startswith("pgqueue."):
                problems.append(f"{page.relative_to(out)}: unresolved reference {name!r}")
    return sorted(set(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/api/html"), help="Output folder.")
    args = parser.parse_args()
    problems = build(args.out)
    for problem in problems:
        print(f"apidocs: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print(f"apidocs: {', '.join(MODULES)} -> {args.out}/index.html")


if __name__ == "__main__":
    main()
