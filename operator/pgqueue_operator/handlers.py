"""The kopf registrations, and nothing else: each handler hands its object to the part that
decides (``reconciling``, ``sampling``, ``gatesync``) and applies the decisions it gets back.

- create / update / resume of a PgQueueWorker → reconcile (children, status, gate);
- a resync timer → reconcile again (heals drift of children and of the flag row);
- a sample timer → queue depth into status and metrics, autoscaling (a reconcile when the
  replicas move), and each worker pod's deletion cost from its heartbeat (``costing``);
- ConfigMap events → gate sync of every PgQueueWorker whose ``spec.gate`` names it (an index);
- events of the owned worker Deployments and sweep CronJobs → the status that follows them
  (``following``: ``Ready``, ``readyReplicas``, ``lastSweep``), written at once instead of at the
  next resync, so ``kubectl get pqw`` follows the pods;
- a start-up check that the API server answers with this operator's credentials: kopf serves its
  health endpoint (the chart's liveness and readiness probe) only once start-up succeeded;

Secrets are not watched: the operator reads each PgQueueWorker's database Secret by name on every
reconcile, so it needs ``get`` on those Secrets only, never a cluster-wide list/watch; a rotation
reaches the pods on the next resync (``resync_interval``).

Failures become ``kopf.TemporaryError`` with the configured delay, after the status that explains
them has been written; nothing propagates bare.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from pgqueue_operator import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    conditions,
    following,
    metrics,
)
from pgqueue_operator.bounding import Deadlines
from pgqueue_operator.builders.common import MANAGED_BY
from pgqueue_operator.costing import DeletionCosts
from pgqueue_operator.decisions import Result
from pgqueue_operator.errors import AccessError
from pgqueue_operator.gatesync import GateSync
from pgqueue_operator.kube import Kube
from pgqueue_operator.objects import object_ref
from pgqueue_operator.reconciling import Reconciler
from pgqueue_operator.sampling import Sampler
from pgqueue_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


# A plain frozen record, like gatesync.Reading in shape only: no logic to share.
@dataclass(frozen=True, slots=True)
class Parts:
    """The deciding parts over one Kubernetes client, and that client."""

    kube: Kube
    reconciler: Reconciler
    sampler: Sampler
    gates: GateSync
    costs: DeletionCosts


@dataclass
class Runtime:
    """What the handlers share; the Kubernetes client is created at operator start-up."""

    config: OperatorSettings
    parts: Parts | None = field(default=None)

    def start(self) -> Parts:
        from kubernetes import client  # noqa: PLC0415 - loaded once, at start-up
        from kubernetes import config as kubeconfig  # noqa: PLC0415

        try:
            kubeconfig.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubeconfig.ConfigException:
            kubeconfig.load_kube_config()  # type: ignore[no-untyped-call]
        kube = Kube(client.ApiClient())
        # One Deadlines for every part: its one-outstanding-call-per-key rule spans them.
        deadlines = Deadlines(self.config.database_timeout)
        self.parts = Parts(
            kube,
            Reconciler(kube, deadlines),
            Sampler(kube, deadlines),
            GateSync(kube, deadlines),
            DeletionCosts(kube, deadlines),
        )
        return self.parts

    @property
    def ready(self) -> Parts:
        if self.parts is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.parts


def _emit(body: Mapping[str, Any], result: Result) -> None:
    for event in result.events:
        ref = kopf.Body(cast("kopf.RawBody", object_ref(body)))
        kopf.event(ref, type=event.type, reason=event.reason, message=event.message)


def _finish(body: Mapping[str, Any], result: Result, patch: kopf.Patch, delay: float) -> None:
    status = result.status_patch(body, conditions.now_utc())
    if status:
        patch.setdefault("status", {}).update(status)
    _emit(body, result)
    if result.retry:
        raise kopf.TemporaryError(result.retry, delay=delay)


def register(registry: kopf.OperatorRegistry, config: OperatorSettings) -> Runtime:
    """Register every handler on ``registry``; returns the runtime they share."""
    runtime = Runtime(config)
    resource = (GROUP, VERSION, PLURAL)
    delay = config.retry_delay

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="pgqueue.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="pgqueue.dev", key="last-handled-configuration"
        )
        # kopf puts a finalizer on every object with timers (to stop them cleanly on deletion).
        settings.persistence.finalizer = "pgqueue.dev/finalizer"
        settings.posting.level = logging.INFO
        settings.watching.reconnect_backoff = 1.0
        if not config.all_namespaces:
            # Namespaced mode: the chart grants no cluster-scope RBAC, so kopf's namespace and CRD
            # scans are refused; kopf retried them through its error backoffs (~55 s) before
            # falling back to the names given, and no object was handled meanwhile (seen with the
            # chart's own ServiceAccount on a real node). This declares the restricted mode.
            settings.scanning.disabled = True
        if runtime.parts is None:
            runtime.start()

    @kopf.on.startup(id="connected", registry=registry)
    def connected(**_: Any) -> None:
        # Ready means serving: the API server answers this operator's list of its own resource
        # (credentials, RBAC and the CRD all proven) before kopf's health endpoint comes up.
        try:
            runtime.ready.kube.check_access(config.namespaces, all_namespaces=config.all_namespaces)
        except AccessError as exc:
            raise kopf.TemporaryError(str(exc), delay=delay) from None

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster ServiceAccount or $KUBECONFIG, whichever the kubernetes client finds.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.index(*resource, id="gate_refs", registry=registry)
    def gate_refs(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, str]:
        configmap = (spec.get("gate") or {}).get("configMapName")
        return {(namespace, configmap): name} if configmap else {}

    @kopf.on.resume(*resource, id="reconcile", registry=registry)
    @kopf.on.create(*resource, id="reconcile", registry=registry)
    @kopf.on.update(*resource, id="reconcile", registry=registry)
    def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        metrics.revive(body.metadata.namespace or "", body.metadata.name or "")
        _finish(body, runtime.ready.reconciler.reconcile(body), patch, delay)

    @kopf.timer(
        *resource,
        interval=config.resync_interval,
        initial_delay=config.resync_interval,
        id="resync",
        registry=registry,
    )
    def resync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        _finish(body, runtime.ready.reconciler.reconcile(body), patch, delay)

    @kopf.timer(*resource, interval=config.sample_interval, id="sample", registry=registry)
    def sample(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        parts = runtime.ready
        # First, so a scale-in decided below finds the costs fresh. Never raises.
        parts.costs.update(body)
        result = parts.sampler.sample(body)
        if result.rescale is not None:  # the Deployment follows status.autoscaling: reconcile
            result = parts.reconciler.reconcile(result.applied_to(body)).merge(result)
        _finish(body, result, patch, delay)

    @kopf.on.delete(*resource, optional=True, id="forget", registry=registry)
    def forget(namespace: str | None, name: str, **_: Any) -> None:
        metrics.forget(namespace or "", name)

    def _workers(index: kopf.Index[Any, str], namespace: str, name: str) -> list[dict[str, Any]]:
        bodies = []
        for worker in sorted(set(index.get((namespace, name), []))):
            body = runtime.ready.kube.get(API_VERSION, KIND, namespace, worker)
            if body is not None:
                bodies.append(body)
        return bodies

    @kopf.on.event("", "v1", "configmaps", id="gate_changed", registry=registry)
    def gate_changed(namespace: str | None, name: str, **kwargs: Any) -> None:
        namespace = namespace or ""
        for body in _workers(kwargs["gate_refs"], namespace, name):
            worker = body["metadata"]["name"]
            result = runtime.ready.gates.sync(body)
            patch = result.status_patch(body, conditions.now_utc())
            runtime.ready.kube.patch_status(namespace, worker, patch)
            _emit(body, result)
            if result.retry:  # event handlers are not retried; the resync timer heals it
                log.warning("gate sync of %s/%s: %s", namespace, worker, result.retry)

    def _follow(namespace: str | None, child: kopf.Body, decide: Any) -> None:
        name = following.owner_name(child)
        if name is None or namespace is None:
            return
        kube = runtime.ready.kube
        # The patch carries the resourceVersion it was computed from: a reconcile's status write
        # in between (its conditions, e.g. Degraded) makes it a 409, and it is computed again.
        for attempt in (1, 2, 3):
            try:
                worker = kube.get(API_VERSION, KIND, namespace, name)
                result = None if worker is None else decide(worker, child)
                if worker is None or result is None:
                    return
                patch = result.status_patch(worker, conditions.now_utc())
                if following.writes_anything(worker, patch):
                    version = str((worker.get("metadata") or {}).get("resourceVersion") or "")
                    kube.patch_status(namespace, name, patch, resource_version=version)
                return
            except ApiException as exc:
                if exc.status == 409 and attempt < 3:
                    continue
                log.warning("status of %s/%s from its children: %s", namespace, name, exc)
                return
            except Exception as exc:  # event handlers are not retried; the resync heals
                log.warning("status of %s/%s from its children: %s", namespace, name, exc)
                return

    children = {"app.kubernetes.io/managed-by": MANAGED_BY}

    @kopf.on.event(
        "apps", "v1", "deployments",
        labels={**children, "app.kubernetes.io/component": "worker"},
        id="deployment_changed", registry=registry,
    )  # fmt: skip
    def deployment_changed(
        type: str | None, namespace: str | None, body: kopf.Body, **_: Any
    ) -> None:
        if type != "DELETED":  # a deleted Deployment is re-created by the resync
            _follow(namespace, body, following.from_deployment)

    @kopf.on.event(
        "batch", "v1", "cronjobs",
        labels={**children, "app.kubernetes.io/component": "sweep"},
        id="sweep_changed", registry=registry,
    )  # fmt: skip
    def sweep_changed(type: str | None, namespace: str | None, body: kopf.Body, **_: Any) -> None:
        if type != "DELETED":
            _follow(namespace, body, following.from_cronjob)

    return runtime
