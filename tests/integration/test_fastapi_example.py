"""examples/fastapi/app.py, served in-process: 200 concurrent requests, each its own answer.

The app is the example as shipped (its lifespan opens the AsyncClient from PGQUEUE_DSN); the
requests go through httpx's ASGI transport on the test's event loop, against real workers.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
import uuid
from types import ModuleType

import httpx
import pytest

from tests.support.loopwatch import LoopWatch
from tests.support.workers import REPO, WorkerFactory

REQUESTS = 200


def _load_example() -> ModuleType:
    path = REPO / "examples" / "fastapi" / "app.py"
    spec = importlib.util.spec_from_file_location("pgqueue_fastapi_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.asyncio
async def test_200_concurrent_requests_through_the_fastapi_example(
    pg_dsn: str, workers: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers.start(pg_dsn, concurrency=4)
    monkeypatch.setenv("PGQUEUE_DSN", pg_dsn)
    app = _load_example().app
    texts = [uuid.uuid4().hex for _ in range(REQUESTS)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as http:
            warm = await http.get("/echo/warm-up", timeout=60)
            assert warm.status_code == 200, warm.text
            gc.freeze()  # as a service after its start-up (see test_async_client)
            with LoopWatch() as watch:
                answers = await asyncio.gather(
                    *(http.get(f"/echo/{t}", timeout=120) for t in texts)
                )
            queued = await http.post("/jobs/later")
    for text, answer in zip(texts, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json()["value"] == {"args": [text], "kwargs": {}}
    assert queued.status_code == 202
    assert isinstance(queued.json()["msg_id"], int)
    # Reported, not asserted: here the loop also runs httpx and the whole ASGI stack of all
    # 200 requests, started in one iteration (test_async_client asserts the client's part).
    print(f"\n{REQUESTS} requests: {watch.summary()}")
