"""Real ``pgqueue worker`` processes for the tests, started and stopped like a pod would be.

A worker counts as up when its ``/readyz`` answers 200 (connected and claiming), awaited with a
deadline. Stopping sends SIGTERM and waits for the exit; killing sends SIGKILL to the supervisor
and its slots (what a node failure does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgqueue.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll a condition until it holds; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # A start-up bound, not a speed check: three workers spawning their slots took over 30 s
    # at load average 32 (helpers' benchmarks on the 2-core machine).
    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            return http_get(self.url("/readyz"))[0] == 200

        wait_until(ready, timeout, "worker /readyz")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def metric(self, sample: str, **labels: str) -> float:
        """One sample of the worker's /metrics (``name_total`` for a counter); 0 if absent."""
        status, text = http_get(self.url("/metrics"))
        assert status == 200, f"/metrics answered {status}:\n{self.log()}"
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == sample and s.labels == labels:
                    return float(s.value)
        return 0.0

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful drain) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the supervisor and its slot processes at once, like a node dying."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class WorkerFactory:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[WorkerProcess] = []

    def start(
        self,
        dsn: str,
        *,
        tasks: str = "pgqueue.demo_tasks",
        concurrency: int = 2,
        queues: str = "default",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        port = free_port()
        log_path = self.tmp / f"worker-{len(self.started)}-{port}.log"
        args = [
            sys.executable,
            "-m",
            "pgqueue.cli",
            "worker",
            "--tasks",
            tasks,
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            *(extra or []),
        ]
        full_env = {
            **os.environ,
            "PGQUEUE_DSN": dsn,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = WorkerProcess(proc, port, log_path, args)
        self.started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                try:
                    worker.terminate(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()
            # Reap any slot left behind by a killed supervisor.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.proc.pid, signal.SIGKILL)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
