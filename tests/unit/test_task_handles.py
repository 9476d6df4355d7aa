"""Task handles (issue 18): ``@pgqueue.task`` returns a typed handle that is still the plain
function, checks its options when registering, and whose arguments mypy checks at call sites."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pgqueue
from pgqueue import TaskHandle, TaskOptions
from pgqueue.errors import TaskRegistrationError
from pgqueue.tasks import lookup

REPO = Path(__file__).resolve().parents[2]


@pgqueue.task(name="handles.scale", queue="reports", priority=7, time_limit=30, max_attempts=2)
def scale(value: int, factor: float = 2.0) -> float:
    """Multiply."""
    return value * factor


def test_a_handle_is_still_the_plain_function() -> None:
    assert isinstance(scale, TaskHandle)
    assert scale(3) == 6.0 and scale(3, factor=0.5) == 1.5
    assert (scale.name, scale.queue, scale.priority) == ("handles.scale", "reports", 7)
    assert scale.options == TaskOptions(time_limit=30, max_attempts=2)
    assert scale.__doc__ == "Multiply." and scale.__name__ == "scale"
    # The worker runs the function itself, found by name.
    assert lookup("handles.scale").func is scale.func


def test_using_binds_a_copy_and_leaves_the_handle_alone() -> None:
    bound = scale.using(queue="urgent", priority=9, tenant="acme")
    assert (bound.queue, bound.priority, bound.name) == ("urgent", 9, "handles.scale")
    assert (scale.queue, scale.priority) == ("reports", 7)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"time_limit": 0}, "time_limit"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"retry_backoff": float("nan")}, "retry_backoff"),
        ({"queue": "no spaces"}, "queue"),
        ({"priority": 11}, "priority"),
    ],
)
def test_a_bad_option_fails_registration_naming_it(options: dict[str, object], field: str) -> None:
    with pytest.raises(TaskRegistrationError, match=field):

        @pgqueue.task(name="handles.bad", **options)  # type: ignore[call-overload]
        def bad() -> None: ...


def test_without_a_client_a_call_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGQUEUE_DSN", raising=False)
    result = scale.call(1)
    assert result.kind == "enqueue_error" and "pgqueue.configure" in result.error, result
    with pytest.raises(pgqueue.ConfigurationError, match=r"handle\.using"):
        scale.delay(1)


def _mypy(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        # The editable install is an import hook mypy cannot follow: point it at the source.
        env={**os.environ, "MYPYPATH": str(REPO / "worker")},
    )


SNIPPET = """
    import pgqueue

    @pgqueue.task(name="snippet.resize")
    def resize(url: str, width: int) -> bytes:
        return b""

    client = pgqueue.Client("postgresql://localhost/app")
    ok: pgqueue.CallResult = resize.using(client).call("https://x", width=300)
    msg_id: int = resize.delay("https://x", 300)
    later: pgqueue.Submitted = resize.submit(url="https://x", width=300)
    direct: bytes = resize("https://x", 300)
    {line}
"""


def test_mypy_checks_the_arguments_of_a_handle_call(tmp_path: Path) -> None:
    bad_type = 'resize.call("https://x", width="wide")'
    missing = 'resize.delay("https://x")'
    done = _mypy(tmp_path, SNIPPET.format(line=f"{bad_type}\n    {missing}"))
    assert done.returncode == 1, done.stdout
    # The two wrong lines, and nothing else (the right ones type-check).
    assert 'Argument "width" to "call" of "TaskHandle" has incompatible type "str"' in done.stdout
    assert 'Missing positional argument "width" in call to "delay"' in done.stdout
    assert "Found 2 errors in 1 file" in done.stdout, done.stdout
