"""Start the operator process: logging, the metrics server, the kopf registry, then kopf itself.

kopf runs standalone (no peering objects: one operator replica per scope; the chart runs one), with
its liveness endpoint serving ``GET /healthz`` on the health port. The Prometheus endpoint serves
:data:`pgqueue_operator.metrics.REGISTRY` on the metrics port.
"""

from __future__ import annotations

import sys

import kopf
from kubernetes.config import ConfigException
from prometheus_client import start_http_server

from pgqueue_operator import handlers, metrics
from pgqueue_operator.settings import OperatorSettings

EXIT_NO_CLUSTER = 1


def run(settings: OperatorSettings) -> None:
    """Run until SIGTERM/SIGINT (kopf handles the signals)."""
    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.REGISTRY)
    registry = kopf.OperatorRegistry()
    runtime = handlers.register(registry, settings)
    try:
        runtime.start()  # fail fast, in one line, when there are no Kubernetes credentials
    except ConfigException as exc:
        sys.stderr.write(f"pgqueue-operator: error: no Kubernetes credentials: {exc}\n")
        raise SystemExit(EXIT_NO_CLUSTER) from None
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=settings.all_namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )
