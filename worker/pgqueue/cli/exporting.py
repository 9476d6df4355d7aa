"""``pgqueue exporter``: queue depth for Prometheus without the operator (a systemd unit, a VM).

Serves ``/metrics`` (the depth series of :mod:`pgqueue.depth`, the same names as the operator's
sampler) and ``/healthz`` until SIGTERM or SIGINT. Run one per database, or two for availability:
only the replica holding the sampler lock counts, the other stands by and exports no depth.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from types import FrameType

from pgqueue import db, depth, serving
from pgqueue.cli.common import CliError, add_dsn, positive_int, seconds

log = logging.getLogger("pgqueue.exporter")

DEFAULT_PORT = 9101
DEFAULT_INTERVAL = 15.0


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


# Shaped like every cli module's register() on purpose: plain argparse, each command's own text.
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "exporter",
        help="Serve per-queue depth, oldest ready age and dead letters on /metrics.",
        description=(
            "Export queue depth for a plain Prometheus scrape, without Kubernetes: per queue "
            "pgqueue_queue_depth{queue,state} (ready, in_flight, delayed, dead), "
            "pgqueue_queue_oldest_age_seconds and pgqueue_dead_letter_depth, the names the "
            "operator's sampler uses. One process per database samples at a time (an advisory "
            "lock); a second exporter stands by and takes over when the first stops. "
            "/healthz answers 503 when the database has not answered for three intervals. "
            "It runs until SIGTERM or SIGINT (exit 0); a port it cannot bind is exit 1."
        ),
    )
    add_dsn(p)
    # The Parser gives each option its PGQUEUE_* env var (named in the help) as its default.
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"Port of /metrics and /healthz (the worker's too: set it per process). "
        f"Default {DEFAULT_PORT}.",
    )
    p.add_argument(
        "--metrics-host",
        default="0.0.0.0",  # noqa: S104 - scraped from afar
        help="Address to bind. Default 0.0.0.0.",
    )
    p.add_argument(
        "--depth-interval",
        type=seconds,
        default=DEFAULT_INTERVAL,
        help=(
            f"Seconds between samples. Default {DEFAULT_INTERVAL:g}; one sample of a million "
            "waiting messages reads for about 0.2 s."
        ),
    )
    p.add_argument(
        "--pooled",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="The DSN is a transaction pooler: no session lock, so run one exporter only. "
        "Default false.",
    )
    p.add_argument(
        "--json", action="store_true", default=False, help="Write log lines as JSON objects."
    )
    p.set_defaults(handler=cmd_exporter)


def dsn_of(args: argparse.Namespace) -> str:
    dsn = args.dsn or os.environ.get("PGQUEUE_DSN", "")
    if not dsn:
        raise CliError("--dsn", "no database given (set PGQUEUE_DSN or pass --dsn)")
    return str(dsn)


def cmd_exporter(args: argparse.Namespace) -> int:
    dsn = dsn_of(args)
    sampler = depth.DepthSampler(dsn, interval=args.depth_interval, pooled=args.pooled)
    registry = depth.registry_for(sampler)

    def healthz() -> tuple[int, bytes, str]:
        if sampler.healthy():
            role = "sampling" if sampler.leader else "standby"
            return 200, f"ok: {role}\n".encode(), "text/plain"
        return 503, b"database not answering\n", "text/plain"

    try:
        server = serving.serve_routes(
            args.metrics_host,
            args.metrics_port,
            {"/metrics": lambda: serving.metrics_body(registry), "/healthz": healthz},
        )
    except OSError as exc:
        log.error("cannot bind %s:%s: %s", args.metrics_host, args.metrics_port, exc.strerror)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = server.server_address[:2]
    log.info(
        "exporter on http://%s:%s/metrics for %s, sampling every %gs",
        host,
        port,
        db.redact(dsn),
        args.depth_interval,
    )
    sampler.start()
    stop.wait()
    log.info("exporter stopping")
    sampler.stop()
    server.shutdown()
    return 0
