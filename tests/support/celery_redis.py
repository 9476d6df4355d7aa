"""Real Redis and a real Celery worker for the legacy route (the system users migrate from).

A private ``redis-server`` on a free loopback port is the broker and the result backend; the
Celery worker is a subprocess running ``tests.support.legacy_tasks``. Readiness is awaited with
deadlines (PING, then a control ping), never guessed with a sleep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e_celery import RedisServer, _stop
from tests.support.legacy_tasks import BROKER_ENV, make_app
from tests.support.workers import REPO, wait_until


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


class LegacyWorker:
    """A running ``celery worker`` for tests.support.legacy_tasks."""

    def __init__(self, broker: str, workdir: Path, env: dict[str, str]) -> None:
        self.broker = broker
        self.log_path = workdir / "celery.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.support.legacy_tasks", "worker",
                 "--pool", "threads", "--concurrency", "4", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--hostname", f"legacy-{os.getpid()}@%h"],
                env={**os.environ, BROKER_ENV: broker,
                     "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                     **env},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.app = make_app(broker)

        def answers() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"celery worker exited:\n{self.log_path.read_text()}")
            return bool(self.app.control.ping(timeout=0.3))

        wait_until(answers, 60, "the Celery worker to answer a ping")

    def stop(self) -> None:
        _stop(self.popen)
        self.app.close()


@pytest.fixture
def legacy_worker(redis_url: str, pg_dsn: str, tmp_path: Path) -> Iterator[Any]:
    """A Celery worker whose tasks record their runs in the test's database."""
    worker = LegacyWorker(
        redis_url, tmp_path, {"PGQUEUE_DSN": pg_dsn, "PGQUEUE_TEST_ROUTE": "celery"}
    )
    try:
        yield worker
    finally:
        worker.stop()
