"""The README's first command is the whole set-up on a fresh clone (the charter's promise).

``git clone`` of the commit under test into a temporary folder, a fresh ``HOME``, empty caches
(pip's and ``PGQUEUE_CACHE``), no activated virtualenv, and ``make demo`` there: it must make its
own ``.venv`` (from the package index, which must be reachable) and run the demo to the end. A
second ``make demo`` must not install again. What is proven is the committed tree: uncommitted
changes in the working copy are not in the clone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_demo import assert_demo_passed

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _fresh_shell_env(tmp_path: Path) -> dict[str, str]:
    """This process's env as a new user's shell would have it: no venv, no caches, no make state."""
    dropped = ("PGQUEUE_", "PIP_CACHE_DIR", "VIRTUAL_ENV", "PYTHONPATH", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    # A virtualenv's bin/ (this suite's own .venv, put first by make) holds an activate script.
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep) if d and not Path(d, "activate").exists()
    )
    for name, var in [("home", "HOME"), ("pip-cache", "PIP_CACHE_DIR"), ("cache", "PGQUEUE_CACHE")]:
        (tmp_path / name).mkdir()
        env[var] = str(tmp_path / name)
    return env


@pytest.mark.timeout(1500)
def test_make_demo_works_on_a_fresh_clone_with_nothing_installed(tmp_path: Path) -> None:
    head = _git("rev-parse", "HEAD")
    clone = tmp_path / "clone"
    _git("clone", "--quiet", "--no-checkout", str(REPO), str(clone))
    _git("checkout", "--quiet", "--detach", head, cwd=clone)
    env = _fresh_shell_env(tmp_path)

    first = subprocess.run(
        ["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=1400
    )
    assert_demo_passed(first)
    assert "pip install" in first.stdout, "the first run should have made the clone's .venv"
    assert (clone / ".venv" / "bin" / "python").exists()

    # Idempotent: the venv is up to date, so a second run goes straight to the demo.
    again = subprocess.run(
        ["make", "-n", "demo"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "pip install" not in again.stdout, again.stdout
    assert "pgqueue.cli demo" in again.stdout
