"""The console's pages (``create_app``): server-rendered HTML, htmx for the live parts.

Pages read through :class:`~pgqueue.web.reading.Reader`; writes go through the same
``pgqueue.admin`` functions as the CLI, only as POSTs that pass :func:`auth.check_write`, and the
two destructive ones (purge, gate flip) take a confirmation step rendered by the server, so they
need no JavaScript. Nothing rendered ever includes the DSN or the write token.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from pgqueue import admin, registry
from pgqueue.web import auth
from pgqueue.web.middleware import PrefixMiddleware, SecurityHeaders
from pgqueue.web.reading import Reader, age, pretty_payload

log = logging.getLogger("pgqueue.web")

PAGE_SIZE = 50
SESSION_HOURS = 12  # a login lasts one shift
DLQ_PAGE = 200


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """How one console runs. ``root_path``: the URL prefix it is served under (an ingress path)."""

    dsn: str
    write_token: str | None = None
    root_path: str = ""
    refresh: float = 2.0
    stale_after: float = 30.0
    query_timeout: float = 5.0
    scan_limit: int = 20_000
    pooled: bool = False
    secure_cookie: bool = False


Handler = Callable[[Request], Awaitable[Response]]


def create_app(config: ConsoleConfig, reader: Reader | None = None) -> ASGIApp:
    reader = reader or Reader(
        config.dsn,
        pooled=config.pooled,
        stats_ttl=max(config.refresh, 1.0),
        query_timeout=config.query_timeout,
        scan=config.scan_limit,
    )
    env = Environment(
        loader=PackageLoader("pgqueue.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["age"] = age
    host = socket.gethostname()

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        prefix = str(request.scope.get("root_path", ""))
        body = env.get_template(name).render(
            u=lambda path: prefix + path,
            request=request,
            csrf=auth.csrf_token(request),
            writable=bool(config.write_token),
            writer=auth.is_writer(request),
            refresh=config.refresh,
            host=host,
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def back(request: Request, path: str) -> RedirectResponse:
        # 303: the browser follows a POST's answer with a GET (no resubmission on reload).
        return RedirectResponse(str(request.scope.get("root_path", "")) + path, status_code=303)

    def writes(handler: Callable[[Request, Any], Awaitable[Response]]) -> Handler:
        async def guarded(request: Request) -> Response:
            form = await request.form()
            try:
                auth.check_write(request, config.write_token, form.get("csrf"))
            except auth.Forbidden as exc:
                log.warning("refused a write to %s: %s", request.url.path, exc)
                return render(request, "refused.html", status=403, reason=str(exc))
            return await handler(request, form)

        return guarded

    # -- pages -----------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        return back(request, "/queues")

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(reader.ping)
        except (psycopg.Error, PoolTimeout) as exc:
            return PlainTextResponse(f"database not answering: {type(exc).__name__}\n", 503)
        return PlainTextResponse("ok\n")

    async def queues(request: Request) -> Response:
        stats, sampled = await run_in_threadpool(reader.queue_stats)
        partial = request.headers.get("hx-request") == "true"
        return render(
            request, "queues_table.html" if partial else "queues.html", stats=stats, sampled=sampled
        )

    async def queue(request: Request) -> Response:
        name = request.path_params["queue"]
        q = request.query_params
        task = q.get("task") or None
        tenant = q.get("tenant")
        tenant = None if tenant in (None, "") else tenant
        state = q.get("state") if q.get("state") in ("ready", "in_flight", "delayed") else None
        try:
            after = max(int(q.get("after", "0") or 0), 0)
        except ValueError:
            after = 0
        stats, sampled = await run_in_threadpool(reader.queue_stats)
        totals = next((s for s in stats if s.queue == name), None)
        error = None
        try:
            page = await run_in_threadpool(
                lambda: reader.messages(
                    name,
                    after=after,
                    limit=PAGE_SIZE,
                    task=task,
                    tenant=tenant,
                    state=state,
                )
            )
        except psycopg.errors.QueryCanceled:
            page, error = None, "this filter took too long on a queue this size; narrow it"
        filters = {"task": task or "", "tenant": tenant or "", "state": state or ""}
        return render(
            request,
            "queue.html",
            queue=name,
            totals=totals,
            sampled=sampled,
            page=page,
            error=error,
            filters=filters,
            after=after,
            scan=reader.scan,
        )

    async def dead_letters(request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        letters = await run_in_threadpool(
            lambda: reader.call(admin.dead_letters, queue=queue, limit=DLQ_PAGE)
        )
        shown = [(dl, *pretty_payload(dl.payload)) for dl in letters]
        stats, _ = await run_in_threadpool(reader.queue_stats)
        return render(
            request,
            "dead_letters.html",
            letters=shown,
            queue=queue or "",
            queues=[s.queue for s in stats if s.dead],
            cap=DLQ_PAGE,
            replayed=request.query_params.get("replayed"),
            purged=request.query_params.get("purged"),
        )

    async def gate(request: Request) -> Response:
        state = await run_in_threadpool(lambda: reader.call(admin.get_flag, admin.GATE_FLAG))
        history = await run_in_threadpool(reader.flag_history)
        return render(request, "gate.html", **_gate_context(state, history))

    async def workers(request: Request) -> Response:
        rows: list[registry.WorkerRow] = await run_in_threadpool(reader.workers)
        partial = request.headers.get("hx-request") == "true"
        return render(
            request,
            "workers_table.html" if partial else "workers.html",
            workers=rows,
            stale_after=config.stale_after,
        )

    # -- login -----------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        return render(request, "login.html")

    async def login(request: Request) -> Response:
        form = await request.form()
        try:
            auth.check_csrf(request, form.get("csrf"))
            auth.log_in(request, config.write_token, form.get("token"))
        except auth.Forbidden as exc:
            log.warning("refused a login: %s", exc)
            return render(request, "login.html", status=403, reason=str(exc))
        log.info("a browser logged in with the write token")
        return back(request, "/queues")

    async def logout(request: Request) -> Response:
        form = await request.form()
        try:
            auth.check_csrf(request, form.get("csrf"))
        except auth.Forbidden as exc:
            return render(request, "refused.html", status=403, reason=str(exc))
        auth.log_out(request)
        return back(request, "/queues")

    # -- writes ----------------------------------------------------------------------------

    async def replay(request: Request, form: Any) -> Response:
        # A row's own button names one dead letter; "replay selected" sends the checked boxes.
        picked = [form["one"]] if form.get("one") else form.getlist("dl_id")
        ids = [int(v) for v in picked if str(v).isdigit()]
        if not ids:
            return render(request, "refused.html", status=400, reason="no dead letter selected")

        def run() -> int:
            return sum(reader.call(admin.replay_dead_letter, dl_id) is not None for dl_id in ids)

        done = await run_in_threadpool(run)
        log.info("web: replayed %d of %d dead letters", done, len(ids))
        return back(request, f"/dead-letters?replayed={done}")

    async def purge(request: Request, form: Any) -> Response:
        queue = str(form.get("queue") or "") or None
        if form.get("confirm") != "yes":
            stats, _ = await run_in_threadpool(reader.queue_stats)
            count = sum(s.dead for s in stats if queue is None or s.queue == queue)
            return render(request, "confirm_purge.html", queue=queue, count=count)
        purged = await run_in_threadpool(lambda: reader.call(admin.purge_dead_letters, queue=queue))
        log.info("web: purged %d dead letters of %s", purged, queue or "every queue")
        return back(request, f"/dead-letters?purged={purged}")

    async def flip(request: Request, form: Any) -> Response:
        to = form.get("to")
        if to not in ("on", "off"):
            return render(request, "refused.html", status=400, reason="to: must be on or off")
        state = await run_in_threadpool(lambda: reader.call(admin.get_flag, admin.GATE_FLAG))
        if form.get("confirm") != "yes":
            history = await run_in_threadpool(reader.flag_history)
            context = _gate_context(state, history)
            return render(request, "confirm_gate.html", to=to, **context)
        client = request.client.host if request.client else "unknown"
        source = f"web console {host} (from {client})"
        await run_in_threadpool(
            lambda: reader.call(
                admin.set_flag, admin.GATE_FLAG, enabled=to == "on", value=to, source=source
            )
        )
        log.info("web: gate turned %s by %s", to, client)
        return back(request, "/gate")

    async def unavailable(request: Request, exc: Exception) -> Response:
        # A database outage is a page that says so (503), never a traceback; htmx polls keep
        # the last table they showed and try again at the next tick.
        log.warning(
            "web: %s %s: the database did not answer (%s)",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return render(request, "unavailable.html", status=503, error=type(exc).__name__)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        reader.open()
        try:
            yield
        finally:
            await run_in_threadpool(reader.close)

    static = resources.files("pgqueue.web").joinpath("static")
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/healthz", healthz),
            Route("/queues", queues),
            Route("/queues/{queue:path}", queue),
            Route("/dead-letters", dead_letters),
            Route("/dead-letters/replay", writes(replay), methods=["POST"]),
            Route("/dead-letters/purge", writes(purge), methods=["POST"]),
            Route("/gate", gate),
            Route("/gate", writes(flip), methods=["POST"]),
            Route("/workers", workers),
            Route("/login", login_page),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(static)), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=auth.session_secret(config.write_token),
                session_cookie="pgqueue_console",
                same_site="strict",
                max_age=SESSION_HOURS * 3600,
                https_only=config.secure_cookie,
                path=(config.root_path.rstrip("/") or "") + "/",
            )
        ],
        exception_handlers={psycopg.Error: unavailable, PoolTimeout: unavailable},
        lifespan=lifespan,
    )
    guarded = SecurityHeaders(app)
    return PrefixMiddleware(guarded, config.root_path) if config.root_path.strip("/") else guarded


def _gate_context(state: admin.FlagState | None, history: list[Any]) -> dict[str, Any]:
    """The gate as the gate reads it, and whether a ConfigMap sync owns it."""
    if state is None:
        effective = False
    elif state.value:
        effective = admin.parse_flag_value(state.value) is True
    else:
        effective = state.enabled
    sources = [state.source] if state else []
    sources += [h.source for h in history]
    managed = next((s for s in sources if s.startswith("configmap ")), None)
    return {"state": state, "effective": effective, "history": history, "managed": managed}
