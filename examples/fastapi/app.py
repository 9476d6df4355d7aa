"""A FastAPI service that runs pgqueue tasks without blocking its event loop.

One :class:`pgqueue.AsyncClient` per process, opened and closed by the app's lifespan: every
request awaits its task's reply on the client's one LISTEN session, so a thousand requests in
flight hold one LISTEN connection and at most ``PGQUEUE_POOL_SIZE`` pooled ones.

Run it (with a worker that has the tasks, e.g. ``pgqueue worker --tasks pgqueue.demo_tasks``)::

    PGQUEUE_DSN=postgresql://... uvicorn app:app --app-dir examples/fastapi

then ``curl -s localhost:8000/echo/hello``. Behind PgBouncer in transaction mode set
``PGQUEUE_POOLED=true``: replies are then polled instead of LISTENed for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

import pgqueue


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Settings come from PGQUEUE_* (PGQUEUE_DSN, PGQUEUE_POOL_SIZE, PGQUEUE_POOLED...).
    async with pgqueue.AsyncClient() as client:
        app.state.pgqueue = client
        yield


app = FastAPI(title="pgqueue from FastAPI", lifespan=lifespan)


def _client(request: Request) -> pgqueue.AsyncClient:
    client: pgqueue.AsyncClient = request.app.state.pgqueue
    return client


@app.get("/echo/{text}")
async def echo(text: str, request: Request) -> dict[str, Any]:
    """Run ``demo.echo`` and answer with its result: request-reply, awaited."""
    result = await _client(request).call("demo.echo", [text], timeout=10)
    if result.kind == "timeout":
        raise HTTPException(504, result.error)
    if not result.ok:
        # task_error: the task raised; cancelled: someone cancelled it (client.cancel, pgqueue
        # cancel); enqueue_error / malformed_reply: the queue failed us.
        raise HTTPException(502, f"{result.kind}: {result.error}")
    return {"value": result.value, "reply_key": result.reply_key}


@app.post("/jobs/{text}", status_code=202)
async def submit(text: str, request: Request) -> dict[str, int]:
    """Queue ``demo.echo`` and answer at once: fire and forget."""
    msg_id = await _client(request).enqueue("demo.echo", [text])
    return {"msg_id": msg_id}
