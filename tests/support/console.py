"""A real ``pgqueue web`` process for the tests: started on a free port with a DSN (and a write
token, by default), awaited on /healthz, stopped at the end of the test."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

from pgqueue.embedded import free_port
from tests.support.workers import http_get, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "a-write-token-for-the-tests"


@dataclass
class Console:
    proc: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT plus the root path
    log_path: Path
    token: str | None

    def url(self, path: str) -> str:
        return self.base + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ConsoleFactory:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Console] = []

    def start(
        self,
        dsn: str,
        *,
        token: str | None = TOKEN,
        root_path: str = "",
        env: dict[str, str] | None = None,
    ) -> Console:
        port = free_port()
        log_path = self.tmp / f"console-{port}.log"
        full_env = {
            **os.environ,
            "PGQUEUE_DSN": dsn,
            "PGQUEUE_WEB_REFRESH": "0.5",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        full_env.pop("PGQUEUE_WEB_WRITE_TOKEN", None)
        if token:
            full_env["PGQUEUE_WEB_WRITE_TOKEN"] = token
        args = [sys.executable, "-m", "pgqueue.cli", "web", "--port", str(port)]
        if root_path:
            args += ["--root-path", root_path]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        console = Console(proc, f"http://127.0.0.1:{port}{root_path}", log_path, token)
        self.started.append(console)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"pgqueue web exited {proc.returncode}:\n{console.log()}")
            try:
                return http_get(console.url("/healthz"))[0] == 200
            except OSError:
                return False

        wait_until(healthy, 60, "pgqueue web to answer /healthz")
        return console

    def stop_all(self) -> None:
        for console in self.started:
            console.proc.terminate()
            try:
                console.proc.wait(20)
            except subprocess.TimeoutExpired:
                console.proc.kill()
                console.proc.wait(10)


def log_in(page: Page, console: Console) -> None:
    page.goto(console.url("/login"))
    page.fill("input[name=token]", console.token or "")
    page.click("#login")
    page.wait_for_selector(".badge.write")


def csrf_of(page: Page) -> str:
    """The session's CSRF token, as every page carries it."""
    token = page.locator("meta[name=csrf]").get_attribute("content")
    assert token, "no CSRF token on the page"
    return token
