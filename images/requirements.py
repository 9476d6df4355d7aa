"""Print the project's runtime requirements (plus the extras named on the command line).

Used by the image builds to install dependencies from pyproject.toml alone, before the source is
copied, so the dependency layer is cached across source changes. Self-references
(``pgqueue[...]``) are left out: the project itself is installed afterwards with ``--no-deps``.
"""

import sys
import tomllib


def main() -> None:
    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    requirements: list[str] = list(project["dependencies"])
    for extra in sys.argv[1:]:
        requirements += project["optional-dependencies"][extra]
    for requirement in requirements:
        if not requirement.replace(" ", "").startswith(("pgqueue[", "pgqueue>", "pgqueue=")):
            print(requirement)


if __name__ == "__main__":
    main()
