"""``pgqueue exporter``: queue depth for Prometheus without the operator (a systemd unit, a VM).

Serves ``/metrics`` (the depth series of :mod:`pgqueue.depth`, the same names as the operator's
sampler) and ``/healthz`` until SIGTERM or SIGINT. Run one per database, or two for availability:
only the replica holding the sampler lock counts, the other stands by and exports no depth.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from pgqueue import db, depth, serving
from pgqueue.cli.common import add_dsn, dsn_of, env_default, env_name, positive_int, seconds

log = logging.getLogger("pgqueue.exporter")

DEFAULT_PORT = 9101
DEFAULT_INTERVAL = 15.0


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


# argparse converts a string default with the option's type, so a bad env var fails like a bad
# option (exit 2, naming it) and only when this command runs.
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
            "Exit codes: 0 stopped by SIGTERM or SIGINT, 1 the port could not be bound, "
            "2 bad usage."
        ),
    )
    add_dsn(p)
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=str(env_default("--metrics-port", DEFAULT_PORT)),
        help=(
            f"Port of /metrics and /healthz (env {env_name('--metrics-port')}, the worker's too: "
            f"set it per process). Default {DEFAULT_PORT}."
        ),
    )
    p.add_argument(
        "--metrics-host",
        default=env_default("--metrics-host", "0.0.0.0"),  # noqa: S104 - scraped from afar
        help=f"Address to bind (env {env_name('--metrics-host')}). Default 0.0.0.0.",
    )
    p.add_argument(
        "--depth-interval",
        type=seconds,
        default=str(env_default("--depth-interval", DEFAULT_INTERVAL)),
        help=(
            f"Seconds between samples (env {env_name('--depth-interval')}). Default "
            f"{DEFAULT_INTERVAL:g}; one sample of a million waiting messages reads for about 0.2 s."
        ),
    )
    p.add_argument(
        "--pooled",
        action=argparse.BooleanOptionalAction,
        default=str(env_default("--pooled", "false")).lower() in {"1", "true", "yes", "on"},
        help=(
            "The DSN is a transaction pooler: no session lock, so run one exporter only "
            f"(env {env_name('--pooled')}). Default false."
        ),
    )
    p.set_defaults(handler=cmd_exporter)


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
