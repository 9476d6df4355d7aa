"""The worker's HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

With ``PGQUEUE_DEPTH_INTERVAL`` set, the worker also takes part in depth sampling
(:mod:`pgqueue.depth`) and serves those series from ``/metrics`` while it is the sampler.
:func:`serve_routes` is the same small server for ``pgqueue exporter``.

``/healthz`` reads the heartbeat the supervisor loop stamps on every turn. A running task never
blocks that loop (tasks run in child processes), so a stale heartbeat means the supervisor itself
is stuck, and only then does the kubelet restart the pod. ``/readyz`` says whether the worker is
connected and taking work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from pgqueue import depth, metrics

Route = Callable[[], tuple[int, bytes, str]]


class Health:
    """State shared between the supervisor loop and the HTTP thread."""

    def __init__(self, staleness: float) -> None:
        self.staleness = staleness
        self._beat = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        self._beat = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self._beat


def _handler(routes: Mapping[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            code, body, ctype = route() if route else (404, b"not found\n", "text/plain")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds are not news."""

    return Handler


def serve_routes(host: str, port: int, routes: Mapping[str, Route]) -> ThreadingHTTPServer:
    """Serve GET routes on a daemon thread; returns the server (its port may be 0 → chosen)."""
    server = ThreadingHTTPServer((host, port), _handler(routes))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="pgqueue-http", daemon=True)
    thread.start()
    return server


def metrics_body(*registries: CollectorRegistry) -> tuple[int, bytes, str]:
    return 200, b"".join(generate_latest(r) for r in registries), CONTENT_TYPE_LATEST


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the worker's endpoints on a daemon thread; returns the server."""
    registries = [metrics.WORKER_REGISTRY, REGISTRY]
    sampled = depth.start_in_worker()
    if sampled is not None:
        registries.append(sampled)

    def metrics_route() -> tuple[int, bytes, str]:
        metrics.HEARTBEAT_AGE.set(health.age())
        return metrics_body(*registries)

    def healthz() -> tuple[int, bytes, str]:
        age = health.age()
        if age > health.staleness:
            return 503, f"stale heartbeat: {age:.1f}s\n".encode(), "text/plain"
        return 200, f"ok: heartbeat {age:.3f}s ago\n".encode(), "text/plain"

    def readyz() -> tuple[int, bytes, str]:
        if health.ready:
            return 200, b"ready\n", "text/plain"
        return 503, b"not ready\n", "text/plain"

    return serve_routes(
        host, port, {"/metrics": metrics_route, "/healthz": healthz, "/readyz": readyz}
    )
