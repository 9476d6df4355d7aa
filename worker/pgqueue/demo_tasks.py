"""Tasks the demo, the images and the tests run: small, deterministic, side-effect free."""

from __future__ import annotations

import os
import time
from typing import Any

from pgqueue.tasks import task


@task(name="demo.echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was given."""
    return {"args": list(args), "kwargs": kwargs}


@task(name="demo.add")
def add(a: float, b: float) -> float:
    return a + b


@task(name="demo.noop")
def noop() -> None:
    """Does nothing: for measuring the queue itself."""


@task(name="demo.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task(name="demo.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task(name="demo.pid")
def pid() -> int:
    """The process that ran the task (tests use it to see which worker ran what)."""
    return os.getpid()


@task(name="demo.unserialisable")
def unserialisable() -> object:
    return {1, 2, 3}
