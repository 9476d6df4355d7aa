"""The legacy transport of the migration-day story: a private redis-server and a real Celery worker.

Both are real processes on loopback. The Celery app (:mod:`devtools.legacy_app`) registers the
same task names as ``pgqueue.demo_tasks``, running the same functions, so a call gives the same
result whichever transport the gate picks. Readiness is awaited with deadlines: redis answers
``PING``, the Celery worker answers a control ping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from devtools import logfiles
from devtools.kubeapi import free_port

REPO = Path(__file__).resolve().parents[1]
BROKER_ENV = "PGQUEUE_E2E_CELERY_BROKER"


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.popen = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (exit {self.popen.poll()})")
            time.sleep(0.05)  # poll interval of a deadline loop
        client.close()
        return self

    def stop(self) -> None:
        _stop(self.popen)


@dataclass
class CeleryWorker:
    broker: str
    workdir: Path
    app_module: str = "devtools.legacy_app"
    concurrency: int = 2
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CeleryWorker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = (self.workdir / "celery-worker.log").open("ab")
        env = {
            **os.environ,
            BROKER_ENV: self.broker,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app_module, "worker",
             "--pool", "threads", "--concurrency", str(self.concurrency), "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--hostname", f"e2e-{os.getpid()}@%h"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        from devtools import legacy_app

        app = legacy_app.make_app(self.broker)
        deadline = time.monotonic() + timeout
        try:
            while not app.control.ping(timeout=0.5):
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Celery worker did not start:\n{self.tail()}")
        finally:
            app.close()
        return self

    def tail(self, chars: int = 4000) -> str:
        return logfiles.tail(self.workdir / "celery-worker.log", self._log, chars)

    def stop(self) -> None:
        _stop(self.popen)
        logfiles.close(self._log)
        self._log = None


def _stop(popen: subprocess.Popen[bytes] | None) -> None:
    if popen is None or popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=10)
