"""Every process and server a benchmark run starts, owned by one registry that stops them all.

A run starts Postgres, Redis, PgBouncer and worker subprocesses; each is registered here the
moment it exists, in its own process group, so :meth:`Processes.close` (run from a ``finally``,
also on Ctrl-C or SIGTERM) can end the whole tree: SIGTERM first, SIGKILL after a grace period.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgqueue.errors import PgQueueError

# The harness is not installed (it sits beside the package in the repository, outside the wheel):
# its consumer subprocesses (``python -m bench.rawloop``) find it through PYTHONPATH.
HARNESS_ROOT = str(Path(__file__).resolve().parents[1])


class BenchError(PgQueueError):
    """A benchmark could not run (a server did not start, a worker died, a phase timed out)."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0  # the HTTP port of a pgqueue worker's /readyz

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, pause: float = 0.02
) -> None:
    """Poll a condition until it holds; raise BenchError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(pause)


def http_status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0


class Processes:
    """The subprocesses of one run; ``close`` ends every one still alive."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        self._count = 0

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        self._count += 1
        log_path = self.workdir / f"{self._count:03d}-{name}.log"
        full_env = {**os.environ, **(env or {})}
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def python(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        """A Python subprocess of this interpreter (``python -m ...``) that can import ``bench``."""
        path = os.pathsep.join(p for p in (HARNESS_ROOT, os.environ.get("PYTHONPATH")) if p)
        return self.start(name, [sys.executable, *args], env={"PYTHONPATH": path, **(env or {})})

    def stop(self, proc: Proc, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after the grace period."""
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(grace)
        # Children of a stopped leader (worker slots) share its group: reap them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self, procs: Sequence[Proc], grace: float = 10.0) -> None:
        for proc in procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in procs:
            self.stop(proc, grace)

    def close(self) -> None:
        self.stop_all(list(reversed(self.procs)), grace=5.0)
