"""`make demo` stays true: the README's first command runs to completion on an embedded Postgres."""

from __future__ import annotations

import os
import subprocess
import sys

from pgqueue import sqlfiles


def demo_checks() -> list[str]:
    """Lines every successful demo prints (see pgqueue/cli/demo.py), whichever way it is run."""
    return [
        "starting an embedded Postgres",
        f"applied migrations {[version for version, _, _ in sqlfiles.migrations()]}",
        "20 RPC round trips",
        "500 messages enqueued and run",
        "dead letter 1: task=demo.fail reason='failed after 2 attempts: ValueError",
        "kind=task_error error='ValueError: an RPC failure'",
        "'dead': 1",
        "gate on  -> calls go to Postgres",
        "gate off -> calls go to legacy",
        "worker exited with 0",
        "demo finished in",
    ]


def assert_demo_passed(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for expected in demo_checks():
        assert expected in done.stdout, f"missing {expected!r} in:\n{done.stdout}"


def test_demo_runs_end_to_end_on_the_embedded_postgres() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert_demo_passed(done)
