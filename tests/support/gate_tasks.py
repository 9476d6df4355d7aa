"""The functions behind the gate tests, registered with pgqueue; legacy_tasks registers the very
same functions with Celery, so both routes compute the same results. Each run records its key and
route in ``test_runs`` (public schema, not a pgqueue table) of the database in PGQUEUE_DSN."""

from __future__ import annotations

import os

from pgqueue import task
from tests.support.core_tasks import record_phase

ROUTE_ENV = "PGQUEUE_TEST_ROUTE"


def add(a: int, b: int) -> int:
    return a + b


def tagged(key: str) -> dict[str, str]:
    route = os.environ.get(ROUTE_ENV, "?")
    record_phase(key, route)
    return {"key": key, "route": route}


def explode(message: str) -> None:
    raise ValueError(message)


for _func in (add, tagged, explode):
    task(name=f"gate.{_func.__name__}")(_func)
