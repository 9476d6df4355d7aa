"""Migration day, end to end (issue 8): the product as a user lives it; one module, two callers.

``tests/e2e/test_migration_day.py`` runs :class:`Story` against the session's fixtures; ``make
demo-k8s`` runs it with ``python -m devtools.story``, which starts the same real components itself.
Each step is printed with its timing. Nothing is mocked: a real API server and controller-manager,
Helm, the operator and the worker pods started from the specs the API server holds (there is no
kubelet here, so :mod:`devtools.e2e_pods` plays it), Postgres, Redis + Celery, Prometheus.
On a cluster with a kubelet (``make e2e-kind``) the same story leaves the pods to it and reaches
them through ``kubectl port-forward``.

The dashboard's PromQL (``charts/pgqueue-operator/dashboards/pgqueue.json``) is what step 5 runs
against the real Prometheus, and what :meth:`Story.plot` draws into ``docs/e2e/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml
from prometheus_client import start_http_server

from devtools import grafana
from devtools.e2e_pods import (
    PodProcess,
    forward_pod,
    has_kubelet,
    plan_pod,
    python_entrypoints,
)
from devtools.e2e_prometheus import (
    Prometheus,
    promtool_check_metrics,
    scalar,
    scrape_jobs,
)
from devtools.kubeapi import KubeCluster, free_port
from pgqueue import Client

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "pgqueue-operator"
DASHBOARD = CHART / "dashboards" / "pgqueue.json"
SAMPLE = REPO / "crds" / "samples" / "minimal.yaml"
RELEASE = "migration-day"
"""Helm release name; cluster-scoped RBAC objects are named after it, so it is distinct from
the k8s tier's releases."""
FULLNAME = f"{RELEASE}-pgqueue-operator"
"""The chart's ``pgqueue-operator.fullname`` for that release."""
WORKER_REPLICAS = 2
LEASE_SECONDS = 3.0
GATE_TTL = 1.0
PROPAGATION_BOUND = 3.0
"""Gate flip → every call on the new route, end to end (the issue's acceptance), seconds."""
FLAG_BOUND = 2.0
"""ConfigMap patched → flag row changed, seconds."""
RECLAIM_DEADLINE = 120.0
"""How long step 6 waits for the re-claim and the answer: generous, the figure is reported."""
DELAYED_MESSAGES = 5
SWEPT_REPLIES = 10
T = TypeVar("T")


class StoryError(AssertionError):
    """A step of the story did not behave as promised."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise StoryError(message)


def eventually(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StoryError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)  # poll interval of a deadline loop


# ---------------------------------------------------------------------------------------------
# The dashboard: the one place the PromQL lives.


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[tuple[str, str, str], ...]
    """(refId, expr, legendFormat)"""


def dashboard_panels(path: Path = DASHBOARD) -> list[Panel]:
    board = json.loads(path.read_text())
    return [
        Panel(
            title=p["title"],
            unit=p.get("fieldConfig", {}).get("defaults", {}).get("unit", ""),
            targets=tuple(
                (t["refId"], grafana.expand(t["expr"]), t.get("legendFormat", ""))
                for t in p["targets"]
            ),
        )
        for p in board["panels"]
    ]


def panel(title_start: str, panels: list[Panel]) -> Panel:
    found = [p for p in panels if p.title.startswith(title_start)]
    check(len(found) == 1, f"dashboard has {len(found)} panels titled {title_start!r}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# The application: a loop of calls through the RoutingDispatcher, recording the route of each.


@dataclass
class Call:
    index: int
    started: float  # wall clock (time.time()), comparable with Postgres timestamps
    ended: float
    route: str  # "pg" | "celery"
    ok: bool
    value: Any
    expected: Any
    reply_key: str = ""


class Recording:
    """A transport the router is given, recording that the call went through it."""

    def __init__(self, inner: Any, route: str, seen: threading.local) -> None:
        self._inner = inner
        self._route = route
        self._seen = seen

    def call(self, *args: Any, **kwargs: Any) -> Any:
        self._seen.route = self._route
        return self._inner.call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Application:
    """``RoutingDispatcher(pg=Client, fallback=CeleryDispatcher(app), gate=Gate(dsn, ttl))``."""

    def __init__(self, dsn: str, broker: str, *, ttl: float = GATE_TTL) -> None:
        from devtools.legacy_app import make_app
        from pgqueue.celery_adapter import CeleryDispatcher
        from pgqueue.gating import Gate
        from pgqueue.routing import RoutingDispatcher

        self.celery = make_app(broker)
        self.client = Client(dsn)
        self.gate = Gate(dsn, ttl=ttl)
        self._seen = threading.local()
        self.router = RoutingDispatcher(
            pg=Recording(self.client, "pg", self._seen),
            fallback=Recording(CeleryDispatcher(self.celery), "celery", self._seen),
            gate=self.gate,
        )
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def call(self, task: str, args: list[Any], expected: Any, timeout: float = 30.0) -> Call:
        self._seen.route = "?"
        started = time.time()
        result = self.router.call(task, args, timeout=timeout)
        ended = time.time()
        with self._lock:
            index = len(self.calls)
            record = Call(
                index=index,
                started=started,
                ended=ended,
                route=str(self._seen.route),
                ok=bool(getattr(result, "ok", False)),
                value=getattr(result, "value", None),
                expected=expected,
                reply_key=str(getattr(result, "reply_key", "") or ""),
            )
            self.calls.append(record)
        return record

    def start_loop(self, pace: float = 0.05) -> None:
        """Call ``demo.echo(i)`` continuously (one call every ``pace`` seconds at most)."""
        self._stop.clear()

        def loop() -> None:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    self.call("demo.echo", [i], {"args": [i], "kwargs": {}})
                except BaseException as exc:  # recorded; the story fails on it
                    self.errors.append(exc)
                    return
                self._stop.wait(pace)  # the call rate, not a synchronisation

        self._thread = threading.Thread(target=loop, name="application", daemon=True)
        self._thread.start()

    def stop_loop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            check(not self._thread.is_alive(), "the application loop did not stop")
            self._thread = None
        check(not self.errors, f"the application loop raised: {self.errors!r}")

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.gate.close()
        self.client.close()
        self.celery.close()


# ---------------------------------------------------------------------------------------------
# The story.


def pod_dsn(dsn: str, host: str) -> str:
    """``dsn`` with its host (and port) replaced by ``host[:port]``; unchanged when empty."""
    if not host:
        return dsn
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    name, _, port = host.partition(":")
    info["host"] = name
    if port:
        info["port"] = port
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


@dataclass
class Flip:
    to: bool
    patched_at: float  # wall clock when `kubectl patch` was issued
    flag_at: float  # the flag row's updated_at
    routed_at: float  # start of the first call on the new route (all later calls on it too)

    @property
    def flag_seconds(self) -> float:
        return self.flag_at - self.patched_at

    @property
    def end_to_end_seconds(self) -> float:
        return self.routed_at - self.patched_at

    @property
    def after_flag_seconds(self) -> float:
        return self.routed_at - self.flag_at


@dataclass
class Story:
    """Steps 1-8 of issue 8 in one namespace; :meth:`close` stops every process it started."""

    kube: KubeCluster
    namespace: str
    dsn: str
    broker: str
    workdir: Path
    plots_dir: Path | None = None
    out: Callable[[str], None] = print
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    t0: float = field(default_factory=time.monotonic)
    wall0: float = field(default_factory=time.time)
    operator: PodProcess | None = None
    workers: list[PodProcess] = field(default_factory=list)
    prometheus: Prometheus | None = None
    app: Application | None = None
    app_metrics_port: int = 0
    flips: list[Flip] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    helm_installed: bool = False
    name: str = "minimal"
    decisions_before: dict[str, float] = field(default_factory=dict)
    real_pods: bool = False
    """A kubelet runs the pods (kind): they are port-forwarded, not started here."""
    operator_env: list[dict[str, str]] = field(default_factory=list)
    """Extra env of the chart's operator pod (on the test node: where the API server is)."""
    kill_pod: Callable[[str, str], None] | None = None
    """With a kubelet: SIGKILLs a pod's container (step 6); else the pod is force-deleted."""
    pod_dsn: str = ""
    """The DSN written into the Secret: ``dsn``, on kind with ``PGQUEUE_E2E_POD_PG_HOST``
    (``host[:port]`` of the same server as seen from inside the cluster)."""

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        start = time.monotonic()
        self.out(f"[{start - self.t0:7.1f}s] {title}")
        yield
        self.out(f"[{time.monotonic() - self.t0:7.1f}s]   done in {time.monotonic() - start:.1f}s")

    def note(self, text: str) -> None:
        self.out(f"           {text}")

    def kubectl(self, *args: str, **kw: Any) -> Any:
        return self.kube.kubectl("-n", self.namespace, *args, **kw)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, name, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise StoryError(proc.stderr)
        body: dict[str, Any] = json.loads(proc.stdout)
        return body

    def items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", kind, "-l", selector, "-o", "json")
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def flag(self) -> tuple[bool, float] | None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT enabled, extract(epoch FROM updated_at) FROM pgqueue.flag"
                " WHERE key = 'pg_queue_enabled'"
            ).fetchone()
        return None if row is None else (bool(row[0]), float(row[1]))

    def close(self) -> None:
        """Stop everything this story started, in reverse order, even after a failure."""
        self.stack.close()

    def __enter__(self) -> Story:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> dict[str, Any]:
        self.step1_helm_install()
        self.step2_apply()
        self.step3_gate_off()
        self.step4_flips()
        self.step5_prometheus()
        self.step6_sigkill()
        self.step7_sweep()
        self.plot()
        self.step8_delete()
        return self.figures

    # -- 1 ----------------------------------------------------------------------------------

    def step1_helm_install(self) -> None:
        with self.step(
            "1. helm install the chart; the operator comes up and watches the namespace"
        ):
            extra_env = [
                {"name": "PGQUEUE_OPERATOR_SAMPLE_INTERVAL", "value": "0.5"},
                {"name": "PGQUEUE_OPERATOR_RESYNC_INTERVAL", "value": "5"},
                {"name": "PGQUEUE_OPERATOR_RETRY_DELAY", "value": "1"},
                *self.operator_env,
            ]
            self.real_pods = has_kubelet(self.kube)
            self.pod_dsn = pod_dsn(self.dsn, os.environ.get("PGQUEUE_E2E_POD_PG_HOST", ""))
            self.note("pods run by " + ("the kubelet" if self.real_pods else "this story"))
            started = time.monotonic()
            self.kube.helm(
                "install", RELEASE, str(CHART), "--namespace", self.namespace,
                "--set", "image.tag=dev",  # what `make images` builds
                "--set", f"watchNamespaces={{{self.namespace}}}",
                "--set", "grafana.dashboard.enabled=true",
                "--set-json", f"extraEnv={json.dumps(extra_env)}",
            )  # fmt: skip
            self.helm_installed = True
            self.stack.callback(self._helm_uninstall_quietly)
            self.note(f"helm install: {time.monotonic() - started:.1f}s")
            eventually(
                "the PgQueueWorker CRD to be served",
                lambda: self.kubectl("get", "pgqueueworkers", check=False).returncode == 0,
                60,
                0.2,
            )
            selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"
            pods = eventually(
                "the controller-manager to create the operator pod",
                lambda: self.items("pods", selector),
                60,
                0.2,
            )
            check(len(pods) == 1, f"expected one operator pod, got {len(pods)}")
            self.operator = self.run_pod(pods[0], {"KUBECONFIG": str(self.kube.kubeconfig)})
            board = self.get("configmap", f"{FULLNAME}-dashboard")
            check(
                board is not None
                and board["metadata"]["labels"].get("grafana_dashboard") == "1"
                and json.loads(board["data"]["pgqueue.json"]) == json.loads(DASHBOARD.read_text()),
                "the dashboard ConfigMap is missing or differs from dashboards/pgqueue.json",
            )
            self.note(f"operator pod {self.operator.name}: {' '.join(self.operator.argv[1:])}")
            self.start_prometheus()

    def start_prometheus(self) -> None:
        """Prometheus from the first minute, so the plots show the whole day."""
        # The application exposes its client metrics like any service would.
        self.app_metrics_port = free_port()
        served = start_http_server(self.app_metrics_port, addr="127.0.0.1")
        if isinstance(served, tuple):  # prometheus_client ≥ 0.17 returns (server, thread)
            server = served[0]
            self.stack.callback(server.server_close)
            self.stack.callback(server.shutdown)
        self.prometheus = self.new_prometheus()
        self.prometheus.start(self.scrape_jobs())
        self.stack.callback(self.prometheus.stop)
        self.await_targets_up()
        self.note(f"prometheus on {self.prometheus.url} scraping {self.target_summary()}")

    def new_prometheus(self) -> Prometheus:
        return Prometheus(self.workdir / "prometheus")

    def await_targets_up(self) -> None:
        """Until Prometheus has scraped every configured target successfully."""
        assert self.prometheus is not None
        prom = self.prometheus
        jobs = yaml.safe_load(prom.config_path.read_text())["scrape_configs"]
        wanted = sum(len(s["targets"]) for j in jobs for s in j.get("static_configs", []))
        wanted += self.discovered_targets()

        def all_up() -> bool:
            targets = prom.targets()
            return len(targets) == wanted and all(t["health"] == "up" for t in targets)

        eventually(f"Prometheus to scrape all {wanted} targets", all_up, 90, 0.2)

    def discovered_targets(self) -> int:
        """Targets Prometheus finds through Kubernetes service discovery (none here; the story
        on the test node adds a ``kubernetes_sd_configs`` job)."""
        return 0

    def run_pod(self, pod: dict[str, Any], extra_env: dict[str, str]) -> PodProcess:
        """Run a pod's init containers to completion, then its container until stopped.

        With a kubelet (kind) the pod runs already: wait until it is Running, forward its ports.
        """
        if self.real_pods:
            name = pod["metadata"]["name"]
            eventually(
                f"pod {name} to run",
                lambda: (
                    ((self.get("pod", name) or {}).get("status") or {}).get("phase") == "Running"
                ),
                180,
                0.5,
            )
            deadline = time.monotonic() + 120
            while True:
                forwarded = forward_pod(
                    self.kube, pod, self.workdir / "pods", killer=self.kill_pod
                ).start()
                try:
                    ready = forwarded.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
                    break
                except RuntimeError:
                    # kubectl port-forward exits at the first refused connection, and a pod is
                    # Running before its process listens (the operator has no readiness probe).
                    forwarded.stop()
                    if time.monotonic() > deadline:
                        raise
            self.stack.callback(forwarded.stop)
            self.note(f"pod {forwarded.name} ready in {ready:.1f}s (forwarded {forwarded.ports})")
            return forwarded
        for init in pod["spec"].get("initContainers") or []:
            proc = plan_pod(
                self.kube, {**pod, "spec": {**pod["spec"], "containers": [init]}},
                self.workdir / "pods", extra_env=extra_env, resolve=python_entrypoints,
            )  # fmt: skip
            proc.log_path = proc.log_path.with_suffix(f".{init['name']}.log")
            proc.start()
            assert proc.popen is not None
            code = proc.popen.wait(timeout=120)
            proc.stop()
            check(code == 0, f"init container {init['name']} of {proc.name} failed:\n{proc.tail()}")
        process = plan_pod(
            self.kube, pod, self.workdir / "pods", extra_env=extra_env, resolve=python_entrypoints
        )
        process.start()
        self.stack.callback(process.stop)
        ready = process.wait_ready()
        self.note(f"pod {process.name} ready in {ready:.1f}s (ports {process.ports})")
        return process

    def _delete_cr_quietly(self) -> None:
        self.kubectl("delete", "pgqueueworkers", "--all", "--wait=true", "--timeout=30s",
                     check=False)  # fmt: skip

    def _helm_uninstall_quietly(self) -> None:
        if self.helm_installed:
            self.kube.helm("uninstall", RELEASE, "--namespace", self.namespace, check=False)
            self.helm_installed = False

    # -- 2 ----------------------------------------------------------------------------------

    def step2_apply(self) -> None:
        with self.step(
            "2. kubectl apply a PgQueueWorker and the gate ConfigMap (off); run the pods"
        ):
            self.kubectl(
                "create", "secret", "generic", "pgqueue-db", f"--from-literal=dsn={self.pod_dsn}"
            )
            self.kubectl(
                "create", "configmap", "pgqueue-gate", "--from-literal=pg_queue_enabled=false"
            )
            body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
            body["spec"].update(
                tasks=["pgqueue.demo_tasks"],
                replicas=WORKER_REPLICAS,
                concurrency=2,
                taskTimeLimitSeconds=30,
                timing={"leaseSeconds": LEASE_SECONDS, "pollIntervalSeconds": 0.2},
                gate={"configMapName": "pgqueue-gate"},
            )
            self.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
            name = self.name = body["metadata"]["name"]
            # On failure, delete it while the operator still runs (it holds a finalizer).
            self.stack.callback(self._delete_cr_quietly)
            deployment = eventually(
                "the operator to render the worker Deployment",
                lambda: self.get("deployment", f"{name}-worker"),
                90,
            )
            selector = ",".join(
                f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
            )

            def worker_pods() -> list[dict[str, Any]] | None:
                pods = self.items("pods", selector)
                return pods if len(pods) == WORKER_REPLICAS else None

            pods = eventually(
                f"the controller-manager to create {WORKER_REPLICAS} worker pods", worker_pods, 60
            )
            for pod in pods:
                self.workers.append(self.run_pod(pod, {"PGQUEUE_METRICS_HOST": "127.0.0.1"}))
            derived = eventually(
                "status.derived",
                lambda: ((self.get("pgqueueworker", name) or {}).get("status") or {}).get(
                    "derived"
                ),
                90,
            )
            env = plan_pod(self.kube, pods[0], self.workdir / "pods").env  # what the pod runs
            check(
                float(env["PGQUEUE_LEASE"]) == derived["leaseSeconds"] == LEASE_SECONDS,
                f"the running worker's lease {env['PGQUEUE_LEASE']} is not the derived one",
            )
            check(env["PGQUEUE_DSN"] == self.pod_dsn, "the worker's DSN is not the Secret's")
            self.note(
                "derived settings the workers run with: "
                + ", ".join(
                    f"{k.removeprefix('PGQUEUE_')}={env[k]}"
                    for k in (
                        "PGQUEUE_TASK_TIME_LIMIT",
                        "PGQUEUE_LEASE",
                        "PGQUEUE_SHUTDOWN_GRACE",
                        "PGQUEUE_HEARTBEAT_STALENESS",
                        "PGQUEUE_RESULT_TTL",
                        "PGQUEUE_POLL_INTERVAL",
                    )
                )
            )
            eventually("the operator to write the gate flag (off)", self._flag_is(False), 90)
            assert self.prometheus is not None
            self.prometheus.reload(self.scrape_jobs())
            self.await_targets_up()
            self.note(f"prometheus scraping {self.target_summary()}")

    def _flag_is(self, enabled: bool) -> Callable[[], tuple[bool, float] | None]:
        def probe() -> tuple[bool, float] | None:
            state = self.flag()
            return state if state is not None and state[0] is enabled else None

        return probe

    def scrape_jobs(self) -> list[dict[str, Any]]:
        """Scrape jobs from the metrics Services the chart and the operator rendered."""
        operator_svc = self.get("service", f"{FULLNAME}-metrics")
        check(operator_svc is not None, "the operator's metrics Service is missing")
        services = [operator_svc]
        if self.workers:
            worker_svc = self.get("service", f"{self.name}-metrics")
            check(worker_svc is not None, "the workers' metrics Service is missing")
            services.append(worker_svc)
        pods = [p for p in [self.operator, *self.workers] if p is not None]
        jobs = scrape_jobs([s for s in services if s is not None], pods)
        jobs.append(
            {
                "job_name": "application",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{self.app_metrics_port}"],
                        "labels": {"pod": "application"},
                    }
                ],
            }
        )
        return jobs

    def target_summary(self) -> str:
        assert self.prometheus is not None
        jobs = yaml.safe_load(self.prometheus.config_path.read_text())["scrape_configs"]
        return ", ".join(
            f"{j['job_name']} ({sum(len(s['targets']) for s in j.get('static_configs', []))})"
            for j in jobs
        )

    def gate_decisions(self) -> dict[str, float]:
        """The application's gate decisions by route, as Prometheus last scraped them."""
        assert self.prometheus is not None
        found = self.prometheus.query(
            'sum by (route) (pgqueue_gate_decisions_total{job="application"})'
        )
        return {s["metric"]["route"]: float(s["value"][1]) for s in found}

    # -- 3 ----------------------------------------------------------------------------------

    def step3_gate_off(self) -> None:
        with self.step("3. the application calls through RoutingDispatcher: gate off → Celery"):
            self.decisions_before = self.gate_decisions()  # this process may have made others
            app = self.app = Application(self.dsn, self.broker)
            self.stack.callback(app.close)
            app.start_loop()
            eventually("20 calls", lambda: len(app.snapshot()) >= 20, 60)
            calls = app.snapshot()
            routes = {c.route for c in calls}
            check(routes == {"celery"}, f"with the gate off calls went to {routes}")
            check(all(c.ok and c.value == c.expected for c in calls), "a Celery call failed")
            self.note(f"{len(calls)} calls so far, all through Celery, all correct")

    # -- 4 ----------------------------------------------------------------------------------

    def flip(self, enabled: bool) -> Flip:
        app = self.app
        assert app is not None
        value = "true" if enabled else "false"
        route = "pg" if enabled else "celery"
        patched_at = time.time()
        self.kubectl(
            "patch", "configmap", "pgqueue-gate", "--type", "merge",
            "-p", json.dumps({"data": {"pg_queue_enabled": value}}),
        )  # fmt: skip
        state = eventually(
            f"the flag row to turn {'on' if enabled else 'off'}", self._flag_is(enabled), 10, 0.02
        )
        flag_at = state[1]

        def settled() -> float | None:
            # The first call on the new route after which every call took it, with two more
            # calls behind it so "every" is observed, not assumed.
            calls = [c for c in app.snapshot() if c.started >= patched_at]
            for i, c in enumerate(calls):
                rest = calls[i:]
                if all(r.route == route for r in rest) and len(rest) >= 3:
                    return c.started
            return None

        routed_at = eventually(f"every call to go to {route}", settled, 10, 0.02)
        flip = Flip(enabled, patched_at, flag_at, routed_at)
        self.flips.append(flip)
        self.note(
            f"gate {'on ' if enabled else 'off'}: flag row after {flip.flag_seconds:.2f}s, every "
            f"call on {route} {flip.after_flag_seconds:.2f}s later; end to end "
            f"{flip.end_to_end_seconds:.2f}s"
        )
        check(
            flip.flag_seconds <= FLAG_BOUND,
            f"the flag row changed {flip.flag_seconds:.2f}s after the patch (bound {FLAG_BOUND}s)",
        )
        check(
            flip.after_flag_seconds <= GATE_TTL + 1.0,
            f"calls followed the flag after {flip.after_flag_seconds:.2f}s (bound ttl + 1 s)",
        )
        check(
            flip.end_to_end_seconds < PROPAGATION_BOUND,
            f"gate flip propagation {flip.end_to_end_seconds:.2f}s ≥ {PROPAGATION_BOUND}s",
        )
        return flip

    def step4_flips(self) -> None:
        assert self.app is not None
        with self.step("4. kubectl patch the gate: on, off, on again; no call lost"):
            for enabled in (True, False, True):
                self.flip(enabled)
            app = self.app
            count = len(app.snapshot())
            eventually("20 more calls on Postgres", lambda: len(app.snapshot()) >= count + 20, 60)
            self.app.stop_loop()
            calls = self.app.snapshot()
            wrong = [c for c in calls if not (c.ok and c.value == c.expected)]
            check(not wrong, f"{len(wrong)} of {len(calls)} calls lost or wrong: {wrong[:3]}")
            by_route = {r: sum(c.route == r for c in calls) for r in ("pg", "celery")}
            check(
                [c.index for c in calls] == list(range(len(calls))),
                "the call log has a gap",
            )
            self.figures["calls"] = by_route | {"total": len(calls)}
            self.figures["flips"] = [
                {
                    "to": "on" if f.to else "off",
                    "flag_s": round(f.flag_seconds, 3),
                    "after_flag_s": round(f.after_flag_seconds, 3),
                    "end_to_end_s": round(f.end_to_end_seconds, 3),
                }
                for f in self.flips
            ]
            worst = max(f.end_to_end_seconds for f in self.flips)
            self.figures["gate_propagation_max_s"] = round(worst, 3)
            self.note(
                f"{len(calls)} calls, none lost, identical results on both routes "
                f"({by_route['celery']} Celery, {by_route['pg']} Postgres); "
                f"gate-flip propagation (end to end, worst of 3): {worst:.2f}s"
            )

    # -- 5 ----------------------------------------------------------------------------------

    def step5_prometheus(self) -> None:
        assert self.prometheus is not None
        assert self.app is not None
        prom = self.prometheus
        panels = dashboard_panels()
        with self.step("5. Prometheus scrapes operator, workers and application; PromQL agrees"):
            client = self.app.client
            for i in range(DELAYED_MESSAGES):
                client.enqueue("demo.echo", [f"later-{i}"], delay=3600)
            calls = self.app.snapshot()
            pg_calls = sum(c.route == "pg" for c in calls)
            depth = panel("Queue depth", panels).targets[0][1]
            served = panel("RPC replies stored", panels).targets[0][1]

            def delayed() -> float | None:
                for series in prom.query(depth):
                    if series["metric"].get("state") == "delayed":
                        return float(series["value"][1]) == DELAYED_MESSAGES or None
                return None

            eventually(f"{depth} to show {DELAYED_MESSAGES} delayed", delayed, 90, 0.25)
            eventually(
                f"{served} == {pg_calls} (the calls routed to Postgres)",
                lambda: scalar(prom.query(served)) == pg_calls or None,
                90,
                0.25,
            )
            quantiles: dict[str, float] = {}
            for ref, expr, legend in panel("RPC latency quantiles", panels).targets:
                value = scalar(prom.query(expr))
                check(
                    value is not None and not math.isnan(value) and value > 0,
                    f"{legend} ({ref}) has no value: {expr}",
                )
                assert value is not None
                quantiles[legend] = value
            check(
                quantiles["p50"] <= quantiles["p95"] <= quantiles["p99"] < LEASE_SECONDS,
                f"RPC latency quantiles out of order or over a lease: {quantiles}",
            )
            made = {"pg": pg_calls, "fallback": sum(c.route == "celery" for c in calls)}

            def decided() -> dict[str, float] | None:
                now = self.gate_decisions()
                delta = {r: now.get(r, 0.0) - self.decisions_before.get(r, 0.0) for r in made}
                return delta if delta == made else None

            eventually(f"the gate decisions to count the calls made {made}", decided, 90, 0.25)
            self.note(f"queue depth: {DELAYED_MESSAGES} delayed; replies stored: {pg_calls}")
            self.note(
                "RPC latency p50/p95/p99: "
                + " / ".join(f"{quantiles[k] * 1000:.1f} ms" for k in ("p50", "p95", "p99"))
            )
            self.note(f"gate decisions (application): {made}, one per call")
            self.figures["promql"] = {
                "queue_depth_delayed": DELAYED_MESSAGES,
                "rpc_replies_stored": pg_calls,
                "rpc_latency_s": {k: round(v, 4) for k, v in quantiles.items()},
                "gate_decisions": made,
            }
            empty = [
                p.title
                for p in panels
                for _, expr, _ in p.targets
                if not prom.query(f"count({expr})") and "lost" not in expr
            ]
            self.note(f"dashboard panels without data (yet): {empty or 'none'}")
            endpoints = {
                "operator": self.operator.url("metrics", "/metrics") if self.operator else "",
                **{w.name: w.url("metrics", "/metrics") for w in self.workers},
                "application": f"http://127.0.0.1:{self.app_metrics_port}/metrics",
            }
            for name, url in endpoints.items():
                with urllib.request.urlopen(url, timeout=5) as resp:
                    text = resp.read().decode()
                result = promtool_check_metrics(text)
                check(
                    result.returncode == 0,
                    f"promtool check metrics failed on {name}:\n{result.stdout}{result.stderr}",
                )
            self.note(f"promtool check metrics passed on {len(endpoints)} endpoints")
            self.figures["calls_pg_before_kill"] = pg_calls

    # -- 6 ----------------------------------------------------------------------------------

    def step6_sigkill(self) -> None:
        assert self.app is not None
        app = self.app
        with self.step("6. SIGKILL the worker running a call: re-claimed after its lease"):
            done: list[Call] = []
            caller = threading.Thread(
                target=lambda: done.append(
                    app.call("demo.sleep", [2.0], 2.0, timeout=RECLAIM_DEADLINE)
                ),
                daemon=True,
            )
            caller.start()
            claim = eventually(
                "a worker to claim demo.sleep", lambda: self._claim("demo.sleep"), 15, 0.02
            )
            victim = next((w for w in self.workers if w.name in claim[0]), None)
            check(victim is not None, f"no pod matches claimed_by={claim[0]!r}")
            assert victim is not None
            killed_at = time.monotonic()
            victim.kill()
            self.workers.remove(victim)
            self.note(f"SIGKILLed {victim.name} (claimed_by {claim[0]}, read_ct {claim[1]})")

            def reclaimed() -> tuple[str, int] | None:
                again = self._claim("demo.sleep")
                return again if again is not None and again[1] > claim[1] else None

            # Bound by the events, not by the clock: a loaded machine delays the next claim
            # (the workers' poll, the kubelet's restart) but cannot make it come early or never.
            reclaim = eventually("another worker to claim it", reclaimed, RECLAIM_DEADLINE, 0.02)
            reclaimed_after = time.monotonic() - killed_at
            caller.join(timeout=RECLAIM_DEADLINE)
            completed_after = time.monotonic() - killed_at
            check(done and done[0].ok and done[0].value == 2.0, f"the call failed: {done}")
            self.figures["sigkill"] = {
                "lease_s": LEASE_SECONDS,
                "reclaimed_after_s": round(reclaimed_after, 3),
                "completed_after_s": round(completed_after, 3),
            }
            self.note(
                f"re-claimed by {reclaim[0]} {reclaimed_after:.2f}s after the kill (lease "
                f"{LEASE_SECONDS:.0f}s); the 2 s call returned {completed_after:.2f}s after it"
            )

    def _claim(self, task: str) -> tuple[str, int] | None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT claimed_by, read_ct FROM pgqueue.message"
                " WHERE task_name = %s AND claimed_by IS NOT NULL AND claimed_by <> ''"
                " AND vt > now()",
                (task,),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    # -- 7 ----------------------------------------------------------------------------------

    def step7_sweep(self) -> None:
        assert self.app is not None
        with self.step("7. run the retention CronJob's command from its rendered spec"):
            cronjob = self.get("cronjob", f"{self.name}-sweep")
            check(cronjob is not None, "the sweep CronJob is missing")
            assert cronjob is not None
            # Callers take their replies (delete on read); what the sweep collects are the replies
            # nobody reads, as a caller that gave up leaves its own behind. Those are made by
            # submitting and never collecting: a caller with a short timeout would race the
            # worker (a reply that lands during its last look is returned), so the step would
            # hold on a slow machine only. Half of the replies are then aged past their expiry,
            # as R seconds would.
            keys = [
                self.app.client.submit("demo.echo", [f"unread-{i}"]).reply_key
                for i in range(2 * SWEPT_REPLIES)
            ]

            def stored() -> set[str]:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    return {
                        r[0]
                        for r in conn.execute(
                            "SELECT reply_key FROM pgqueue.result WHERE reply_key = ANY(%s)",
                            (keys,),
                        )
                    }

            eventually("the unread replies to be stored", lambda: len(stored()) == len(keys), 120)
            expired, fresh = keys[:SWEPT_REPLIES], keys[SWEPT_REPLIES:]
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                aged = conn.execute(
                    "UPDATE pgqueue.result SET expires_at = now() - interval '1 second'"
                    " WHERE reply_key = ANY(%s)",
                    (expired,),
                ).rowcount
            check(aged == len(expired), f"aged {aged} of {len(expired)} replies")
            template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
            pod = {
                "metadata": {
                    **template["metadata"],
                    "name": f"{self.name}-sweep-manual",
                    "namespace": self.namespace,
                },
                "spec": template["spec"],
            }
            if self.real_pods:  # the Job controller and a kubelet run it
                job_name = f"{self.name}-sweep-manual"
                self.kubectl("create", "job", f"--from=cronjob/{self.name}-sweep", job_name)
                eventually(
                    f"job {job_name} to succeed",
                    lambda: ((self.get("job", job_name) or {}).get("status") or {}).get(
                        "succeeded"
                    ),
                    180,
                    0.5,
                )
            else:
                job = plan_pod(self.kube, pod, self.workdir / "pods", resolve=python_entrypoints)
                job.start()
                self.stack.callback(job.stop)
                assert job.popen is not None
                code = job.popen.wait(timeout=120)
                check(code == 0, f"the sweep exited {code}:\n{job.tail()}")
            left = stored()
            check(not left & set(expired), f"{len(left & set(expired))} expired replies survived")
            check(set(fresh) <= left, f"{len(set(fresh) - left)} fresh replies were deleted")
            self.figures["sweep"] = {"deleted": len(expired), "kept": len(fresh)}
            self.note(
                f"`pgqueue {' '.join(pod['spec']['containers'][0]['args'])}` from the CronJob "
                f"({cronjob['spec']['schedule']}): "
                f"{len(expired)} expired replies deleted, {len(fresh)} fresh kept"
            )

    # -- plots ------------------------------------------------------------------------------

    def plot(self) -> None:
        if self.plots_dir is None or self.prometheus is None:
            return
        with self.step(f"   plots of the dashboard queries → {self.plots_dir}"):
            written = plot_dashboard(
                self.prometheus, dashboard_panels(), self.wall0, time.time(), self.plots_dir,
                marks=[(f.patched_at, "on" if f.to else "off") for f in self.flips],
            )  # fmt: skip
            self.note(f"{len(written)} files")

    # -- 8 ----------------------------------------------------------------------------------

    def step8_delete(self) -> None:
        with self.step(
            "8. kubectl delete the CR: children collected; helm uninstall: nothing left"
        ):
            started = time.monotonic()
            self.kubectl("delete", "pgqueueworker", self.name, "--wait=true", "--timeout=120s",
                         timeout=150)  # fmt: skip
            kinds = {
                "deployment": f"{self.name}-worker",
                "service": f"{self.name}-metrics",
                "cronjob": f"{self.name}-sweep",
                "poddisruptionbudget": f"{self.name}-worker",
            }
            for kind, name in kinds.items():

                def gone(kind: str = kind, name: str = name) -> bool:
                    return self.get(kind, name) is None

                eventually(f"{kind}/{name} to be collected", gone, 90, 0.25)
            selector = f"app.kubernetes.io/instance={self.name}"
            eventually(
                "the worker pods to be collected",
                lambda: not self.items("pods", selector),
                90,
                0.25,
            )
            for worker in self.workers:  # the kubelet stops containers of deleted pods
                worker.stop()
            self.note(f"children collected in {time.monotonic() - started:.1f}s")
            started = time.monotonic()
            self.kube.helm("uninstall", RELEASE, "--namespace", self.namespace, "--wait")
            self.helm_installed = False
            if self.operator is not None:
                self.operator.stop()
            release = f"app.kubernetes.io/instance={RELEASE}"
            eventually(
                "the operator pod to be collected",
                lambda: not self.items("pods", release),
                90,
                0.25,
            )
            kinds_left = (
                "all,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets"
            )
            leftovers = self.items(kinds_left, release)
            cluster_wide = json.loads(
                self.kube.kubectl(
                    "get", "clusterroles,clusterrolebindings", "-l", release, "-o", "json"
                ).stdout
            )["items"]
            secrets = [
                s["metadata"]["name"]
                for s in json.loads(self.kubectl("get", "secrets", "-o", "json").stdout)["items"]
                if s["metadata"]["name"].startswith("sh.helm.release")
            ]
            workloads = json.loads(
                self.kubectl(
                    "get", "deployments,replicasets,pods,services,cronjobs,jobs", "-o", "json"
                ).stdout
            )["items"]
            check(
                not leftovers and not cluster_wide and not secrets and not workloads,
                "left behind: "
                + ", ".join(
                    f"{o['kind']}/{o['metadata']['name']}"
                    for o in [*leftovers, *cluster_wide, *workloads]
                )
                + f" {secrets}",
            )
            self.note(
                f"helm uninstall in {time.monotonic() - started:.1f}s; nothing of the release is "
                "left (the CRD stays by Helm's design; the Secret and the gate are the user's)"
            )


# ---------------------------------------------------------------------------------------------
# Plots.


def plot_dashboard(
    prom: Prometheus,
    panels: list[Panel],
    start: float,
    end: float,
    out_dir: Path,
    marks: list[tuple[float, str]] | None = None,
) -> list[Path]:
    """Every dashboard panel's PromQL over the run, one PNG grid plus the raw series as JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    step = max(1.0, round((end - start) / 300, 1))
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(14, 3.0 * rows), squeeze=False)
    raw: dict[str, Any] = {}
    for ax, p in zip(axes.flat, panels, strict=False):
        for ref, expr, legend in p.targets:
            series = prom.query_range(expr, start, end, step)
            raw[f"{p.title} [{ref}]"] = {"expr": expr, "series": series}
            for s in series:
                xs = [float(v[0]) - start for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                label = legend
                for key, val in s["metric"].items():
                    label = label.replace("{{" + key + "}}", val)
                ax.plot(xs, ys, label=label, linewidth=1.2)
        for at, text in marks or []:
            ax.axvline(at - start, color="grey", linestyle=":", linewidth=0.8)
            ax.text(at - start, 1.0, f"gate {text}", transform=ax.get_xaxis_transform(),
                    fontsize=6, color="grey", va="top")  # fmt: skip
        ax.set_xlim(0, end - start)
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel("seconds into the story", fontsize=7)
        ax.set_ylabel(p.unit, fontsize=7)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("pgqueue dashboard queries over the migration-day story (real Prometheus)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    png = out_dir / "dashboard.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    data = out_dir / "series.json"
    data.write_text(json.dumps(raw, indent=1))
    return [png, data]


# ---------------------------------------------------------------------------------------------
# `python -m devtools.story` (make demo-k8s): the same story, starting the components itself.


def main() -> int:
    import argparse

    from devtools.e2e_celery import CeleryWorker, RedisServer
    from devtools.kubeapi import KUBECONFIG_ENV, ControlPlane, ensure_tools, server_of
    from pgqueue.embedded import EmbeddedPostgres
    from pgqueue.migrating import migrate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "e2e")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--node",
        action="store_true",
        help="run the pods on a local test node (containerd + kubelet, needs root; "
        "devtools/node.py) and add the node's steps (devtools/node_story.py)",
    )
    options = parser.parse_args()
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, flush=True)

    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="pgqueue-e2e-"))
        if not options.keep:  # registered first, so it runs last
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        say(f"work folder {workdir}")
        external = os.environ.get(KUBECONFIG_ENV)
        if external:
            from devtools.kubeapi import bin_dir

            path = Path(external)
            kube = KubeCluster(path, server_of(path), bin_dir(), workdir / "helm")
        else:
            plane = ControlPlane(ensure_tools(), workdir / "kube")
            kube = plane.start()
            stack.callback(plane.stop)
            say(f"control plane up in {plane.startup_seconds:.1f}s ({kube.server})")
        t = time.monotonic()
        pg = EmbeddedPostgres().start()
        stack.callback(pg.cleanup)
        dsn = pg.dsn
        migrate(dsn)
        say(f"postgres up and migrated in {time.monotonic() - t:.1f}s")
        t = time.monotonic()
        redis_server = RedisServer(workdir / "redis").start()
        stack.callback(redis_server.stop)
        celery_worker = CeleryWorker(redis_server.url, workdir / "celery").start()
        stack.callback(celery_worker.stop)
        say(f"redis + celery worker up in {time.monotonic() - t:.1f}s")
        namespace = f"demo-{int(time.time())}"
        kube.kubectl("create", "namespace", namespace)
        stack.callback(
            lambda: kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        )
        story_class: type[Story] = Story
        extra: dict[str, Any] = {}
        if options.node:
            story_class, extra = _on_a_node(kube, dsn, workdir, stack, say)
        with story_class(kube, namespace, dsn, redis_server.url, workdir, plots_dir=options.plots,
                         out=say, **extra) as story:  # fmt: skip
            figures = story.run()
        say(json.dumps(figures, indent=2))
        worst = figures["gate_propagation_max_s"]
        say(f"migration day done in {time.monotonic() - started:.1f}s (gate flip, worst: {worst}s)")
        if options.keep:
            say(f"kept {workdir}")
    return 0


def _on_a_node(
    kube: KubeCluster,
    dsn: str,
    workdir: Path,
    stack: contextlib.ExitStack,
    say: Callable[[str], None],
) -> tuple[type[Story], dict[str, Any]]:
    """``make demo-k8s-node``: the test node joined to this control plane, the images in it, and
    the story class and arguments that run on it (as tests/e2e/test_migration_day_node.py)."""
    import subprocess

    from devtools.node import (
        OPERATOR_IMAGE,
        ROOT_PREFIX,
        WORKER_IMAGE,
        NodeRunner,
        ensure_node_tools,
    )
    from devtools.node_story import NodeStory

    t = time.monotonic()
    runner = NodeRunner(kube, ensure_node_tools(), Path(tempfile.mkdtemp(prefix=ROOT_PREFIX)))
    runner.start()
    stack.callback(runner.stop)
    node = runner.join()
    say(f"node {node.name} Ready in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    subprocess.run(["make", "--no-print-directory", "images"], cwd=REPO, check=True)
    for image in (WORKER_IMAGE, OPERATOR_IMAGE):
        node.import_image(image)
    say(f"make images and the import into the node's containerd: {time.monotonic() - t:.1f}s")
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    pg = node.forward(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432))))
    os.environ["PGQUEUE_E2E_POD_PG_HOST"] = f"{pg.host}:{pg.port}"
    api = node.forward("127.0.0.1", node.api_port)
    operator_env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": api.host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(api.port)},
    ]
    extra = {"operator_env": operator_env, "kill_pod": node.kill_container, "node_name": node.name}
    return NodeStory, extra


if __name__ == "__main__":
    sys.exit(main())
