"""``pgqueue web``: the web console (queues, dead letters, the gate, workers) on one port.

The console itself lives in :mod:`pgqueue.web` and needs the ``web`` extra; without it this
command says how to install it instead of failing with an import error.
"""

from __future__ import annotations

import argparse
import logging
import os

from pgqueue import db
from pgqueue.cli.common import CliError, add_dsn, positive_int, seconds
from pgqueue.cli.exporting import _port, dsn_of
from pgqueue.cli.parsing import env_name

log = logging.getLogger("pgqueue.web")

DEFAULT_PORT = 8080
TOKEN_ENV = "PGQUEUE_WEB_WRITE_TOKEN"  # noqa: S105 - the name of the env var
MIN_TOKEN = 16


def env_default(option: str, fallback: object) -> object:
    # The console's options keep PGQUEUE_WEB_* names (a bare PGQUEUE_PORT would collide with
    # Kubernetes service links), so they name their env var in their help and read it here; the
    # shared Parser leaves an option whose help names its variable alone.
    return os.environ.get(env_name(option), fallback)


def _flag(option: str, default: bool) -> bool:
    return str(env_default(option, str(default))).strip().lower() in {"1", "true", "yes", "on"}


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
            "Exit codes: 0 stopped by SIGTERM or SIGINT, 1 the port could not be bound or the "
            "web extra is missing, 2 bad usage."
        ),
    )
    add_dsn(p)
    p.add_argument(
        "--port",
        type=_port,
        default=str(env_default("--web-port", DEFAULT_PORT)),
        help=f"Port to listen on (env {env_name('--web-port')}). Default {DEFAULT_PORT}.",
    )
    p.add_argument(
        "--host",
        default=env_default("--web-host", "127.0.0.1"),
        help=(
            f"Address to bind (env {env_name('--web-host')}). Default 127.0.0.1; use 0.0.0.0 in "
            "a container."
        ),
    )
    p.add_argument(
        "--write-token",
        default=None,
        help=(
            f"Token that unlocks replay, purge and gate flips (env {TOKEN_ENV}; prefer the env "
            f"var: an option shows in ps). At least {MIN_TOKEN} characters. Default: none, "
            "read-only."
        ),
    )
    p.add_argument(
        "--root-path",
        default=env_default("--web-root-path", ""),
        help=(
            f"URL prefix the console is served under, e.g. /pgqueue behind an ingress (env "
            f"{env_name('--web-root-path')}); works whether or not the ingress strips it. "
            "Default: none."
        ),
    )
    p.add_argument(
        "--refresh",
        type=seconds,
        default=str(env_default("--web-refresh", 2.0)),
        help=(
            f"Seconds between live refreshes, and the age up to which one count of the queues "
            f"is shared by every browser (env {env_name('--web-refresh')}). Default 2."
        ),
    )
    p.add_argument(
        "--query-timeout",
        type=seconds,
        default=str(env_default("--web-query-timeout", 5.0)),
        help=(
            f"Seconds one read may take before it is cancelled (env "
            f"{env_name('--web-query-timeout')}). Default 5."
        ),
    )
    p.add_argument(
        "--scan-limit",
        type=positive_int,
        default=str(env_default("--web-scan-limit", 20_000)),
        help=(
            f"Messages a filtered queue page looks at, at most, before it offers to search on "
            f"(env {env_name('--web-scan-limit')}). Default 20000 (a few tens of ms per page)."
        ),
    )
    p.add_argument(
        "--stale-after",
        type=seconds,
        default=str(env_default("--web-stale-after", 30.0)),
        help=(
            f"Seconds without a heartbeat after which a worker shows as stale (env "
            f"{env_name('--web-stale-after')}). Default 30."
        ),
    )
    p.add_argument(
        "--secure-cookie",
        action=argparse.BooleanOptionalAction,
        default=_flag("--web-secure-cookie", False),
        help=(
            "Send the session cookie over HTTPS only: set it when TLS ends at the ingress "
            f"(env {env_name('--web-secure-cookie')}). Default false."
        ),
    )
    p.add_argument(
        "--pooled",
        action=argparse.BooleanOptionalAction,
        default=_flag("--pooled", False),
        help=f"The DSN is a transaction pooler (env {env_name('--pooled')}). Default false.",
    )
    p.set_defaults(handler=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    dsn = dsn_of(args)
    token = args.write_token or os.environ.get(TOKEN_ENV) or None
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
