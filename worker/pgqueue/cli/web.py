"""``pgqueue web``: the web console (queues, dead letters, the gate, workers) on one port.

The console itself lives in :mod:`pgqueue.web` and needs the ``web`` extra; without it this
command says how to install it instead of failing with an import error.
"""

from __future__ import annotations

import argparse
import logging

from pgqueue import db
from pgqueue.cli.common import CliError, add_dsn, positive_int, seconds
from pgqueue.cli.exporting import _port, dsn_of

log = logging.getLogger("pgqueue.web")

DEFAULT_PORT = 8080
MIN_TOKEN = 16


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "web",
        help="Serve the web console: queues, dead letters, the gate and the workers.",
        description=(
            "A web console over the queue database: per-queue counts refreshed live, a page per "
            "queue with its messages (keyset pages: as fast at a million messages as at ten), "
            "dead letters with their reasons and payloads (replay, purge), the gate with its "
            "history (flip), and the live workers. Read-only unless started with a write token; "
            "a browser logs in with it once and every change is a POST with a CSRF token. The "
            "DSN and the token are never shown. Needs the web extra: pip install 'pgqueue[web]'. "
            "It runs until SIGTERM or SIGINT (exit 0); a port it cannot bind, or a missing web "
            "extra, is exit 1. Each option's env var is PGQUEUE_WEB_* (a bare PGQUEUE_PORT "
            "would collide with Kubernetes service links); the short spelling (--port) works too."
        ),
    )
    add_dsn(p)
    # The shared Parser gives each option the env var of its first spelling (PGQUEUE_WEB_*).
    p.add_argument(
        "--web-port",
        "--port",
        dest="port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"Port to listen on. Default {DEFAULT_PORT}.",
    )
    p.add_argument(
        "--web-host",
        "--host",
        dest="host",
        default="127.0.0.1",
        help="Address to bind. Default 127.0.0.1; use 0.0.0.0 in a container.",
    )
    p.add_argument(
        "--web-write-token",
        "--write-token",
        dest="write_token",
        default=None,
        help=(
            "Token that unlocks replay, purge and gate flips (prefer the env var: an option "
            f"shows in ps). At least {MIN_TOKEN} characters. Default: none, read-only."
        ),
    )
    p.add_argument(
        "--web-root-path",
        "--root-path",
        dest="root_path",
        default="",
        help=(
            "URL prefix the console is served under, e.g. /pgqueue behind an ingress; works "
            "whether or not the ingress strips it. Default: none."
        ),
    )
    p.add_argument(
        "--web-refresh",
        "--refresh",
        dest="refresh",
        type=seconds,
        default=2.0,
        help=(
            "Seconds between live refreshes, and the age up to which one count of the queues "
            "is shared by every browser. Default 2."
        ),
    )
    p.add_argument(
        "--web-query-timeout",
        "--query-timeout",
        dest="query_timeout",
        type=seconds,
        default=5.0,
        help="Seconds one read may take before it is cancelled. Default 5.",
    )
    p.add_argument(
        "--web-scan-limit",
        "--scan-limit",
        dest="scan_limit",
        type=positive_int,
        default=20_000,
        help=(
            "Messages a filtered queue page looks at, at most, before it offers to search on. "
            "Default 20000 (a few tens of ms per page)."
        ),
    )
    p.add_argument(
        "--web-stale-after",
        "--stale-after",
        dest="stale_after",
        type=seconds,
        default=30.0,
        help="Seconds without a heartbeat after which a worker shows as stale. Default 30.",
    )
    p.add_argument(
        "--web-secure-cookie",
        "--secure-cookie",
        dest="secure_cookie",
        action=argparse.BooleanOptionalAction,
        default=False,
        help=(
            "Send the session cookie over HTTPS only: set it when TLS ends at the ingress. "
            "Default false."
        ),
    )
    p.add_argument(
        "--pooled",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="The DSN is a transaction pooler. Default false.",
    )
    p.add_argument(
        "--json", action="store_true", default=False, help="Write log lines as JSON objects."
    )
    p.set_defaults(handler=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    dsn = dsn_of(args)
    token = args.write_token or None
    if token is not None and len(token) < MIN_TOKEN:
        raise CliError("--write-token", f"must be at least {MIN_TOKEN} characters")
    root_path = str(args.root_path or "").strip()
    if root_path and not root_path.startswith("/"):
        raise CliError("--root-path", f"must start with /, got {root_path!r}")
    try:
        import uvicorn  # noqa: PLC0415 - an optional extra, and keeps the other commands light

        from pgqueue.web import ConsoleConfig, create_app  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        log.error("the web console needs the web extra (%s): pip install 'pgqueue[web]'", exc.name)
        return 1
    config = ConsoleConfig(
        dsn=dsn,
        write_token=token,
        root_path=root_path.rstrip("/"),
        refresh=args.refresh,
        stale_after=args.stale_after,
        query_timeout=args.query_timeout,
        scan_limit=args.scan_limit,
        pooled=args.pooled,
        secure_cookie=args.secure_cookie,
    )
    log.info(
        "web console on http://%s:%s%s/ for %s (%s)",
        args.host,
        args.port,
        config.root_path,
        db.redact(dsn),
        "writable with the token" if token else "read-only",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            server_header=False,
        )
    )
    server.run()
    # uvicorn returns instead of raising when it cannot bind; its log says why.
    return 0 if server.started else 1
