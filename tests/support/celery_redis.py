"""Real Redis and a real Celery worker for the legacy route (the system users migrate from).

A private ``redis-server`` on a free loopback port is the broker and the result backend for the
whole session; each test flushes it and starts its own ``celery worker`` subprocess (prefork, two
children: Celery's production default) running ``tests.support.legacy_tasks``, whose tasks are the
very functions of ``tests.support.gate_tasks``. Readiness is awaited with deadlines (PING, then a
control ping answered by the new worker), never guessed with a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from devtools.e2e_celery import RedisServer
from tests.support.legacy_tasks import BROKER_ENV, make_app
from tests.support.workers import REPO, wait_until


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on loopback, stopped at the end of the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """The session's Redis, emptied: no message or result of an earlier test is left in it."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url


def close_app(app: Celery) -> None:
    """Close an app and its result backend's Redis connections (``app.close`` leaves those open).

    A result still pending (a call that timed out) would otherwise reconnect from its ``__del__``
    to unsubscribe, whenever the garbage collector gets to it, and leak that socket.
    """
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    with contextlib.suppress(Exception):
        if consumer is not None:
            consumer.stop()
            consumer.subscribed_to.clear()
    with contextlib.suppress(Exception):
        backend.client.connection_pool.disconnect()
    app.close()


@pytest.fixture
def celery_app(fresh_redis: str) -> Iterator[Celery]:
    """The legacy Celery app (JSON, Redis broker and result backend), no worker attached."""
    app = make_app(fresh_redis)
    try:
        yield app
    finally:
        close_app(app)


class LegacyWorker:
    """A running ``celery worker`` for tests.support.legacy_tasks."""

    def __init__(
        self, broker: str, workdir: Path, env: dict[str, str], concurrency: int = 2
    ) -> None:
        self.broker = broker
        self.log_path = workdir / "celery.log"
        self.hostname = f"legacy-{os.getpid()}-{workdir.name}@localhost"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.support.legacy_tasks", "worker",
                 "--pool", "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--hostname", self.hostname],
                env={**os.environ, BROKER_ENV: broker,
                     "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                     **env},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.app = make_app(broker)
        try:
            wait_until(self._answers, 60, "the Celery worker to answer a ping")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"the celery worker exited with {self.popen.returncode}")
        replies = self.app.control.ping(destination=[self.hostname], timeout=0.3)
        return any(self.hostname in reply for reply in replies)

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown) to the worker's process group; SIGKILL after 15 s."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        close_app(self.app)


@pytest.fixture
def legacy_worker(fresh_redis: str, pg_dsn: str, tmp_path: Path) -> Iterator[LegacyWorker]:
    """A Celery worker whose tasks record their runs in the test's database (route "celery")."""
    worker = LegacyWorker(
        fresh_redis, tmp_path, {"PGQUEUE_DSN": pg_dsn, "PGQUEUE_TEST_ROUTE": "celery"}
    )
    try:
        yield worker
    finally:
        worker.stop()
