"""The migration day's steps that need a real node (issue 17): :class:`NodeStory` adds them to
:class:`~devtools.story.Story`.

On the test node (``devtools/node.py``) a kubelet runs the pods, so the story can also prove
what only a node shows: the pods as ``kubectl get pods -o wide`` lists them (Running on the node,
no restart), ``kubectl logs``/``exec`` into them, the restricted securityContext as the kernel
enforces it; ``kubectl get pqw`` following the pods (issue 17 item 7); Prometheus finding the
worker pods itself through ``kubernetes_sd_configs`` against the API server and scraping their
pod IPs; a Secret rotation rolling the Deployment while calls run; ``kubectl drain`` stopped by the
PodDisruptionBudget. Each wait is bound by an event with a generous deadline; the figures are
recorded, and asserted against bounds far from what a loaded machine measures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from kubernetes.client.exceptions import ApiException

from devtools.e2e_prometheus import Prometheus, with_kubernetes_sd
from devtools.kubeapi import load_pki
from devtools.story import RELEASE, WORKER_REPLICAS, Story, check, eventually
from pgqueue_operator.builders.common import restricted_security_context
from pgqueue_operator.kube import Kube

FOLLOW_BOUND = 5.0
"""READY of ``kubectl get pqw`` after the last pod's, seconds: the issue asks for 2 s, which is
the figure reported; the bound leaves room for a machine shared with other jobs and is still far
below the resync period (5 s here, 60 s by default) that was the only path before."""
ROLL_DEADLINE = 240.0
SD_JOB = "worker-pods"


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def metrics_port(pod: dict[str, Any]) -> int:
    ports = pod["spec"]["containers"][0].get("ports") or []
    return int(next(p["containerPort"] for p in ports if p.get("name") == "metrics"))


@dataclass
class Follow:
    """When the worker pods, then the PgQueueWorker, were first seen Ready (monotonic)."""

    pods_at: float | None = None
    pqw_at: float | None = None
    errors: list[BaseException] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        if self.pods_at is None or self.pqw_at is None:
            return None
        return max(0.0, self.pqw_at - self.pods_at)


@dataclass
class NodeStory(Story):
    """The story with the node's own steps; pods are run by the kubelet (``real_pods``)."""

    node_name: str = "pgqueue-node"
    operator_pod: str = ""

    def run(self) -> dict[str, Any]:
        self.step1_helm_install()
        with self.watch_ready(WORKER_REPLICAS) as follow:
            self.step2_apply()
            eventually("the PgQueueWorker to turn Ready", lambda: follow.seconds is not None, 60)
        self.record_follow("apply", follow)
        self.step2_node()
        self.step3_gate_off()
        self.step4_flips()
        self.step5_prometheus()
        self.step5_discovery()
        self.step6_sigkill()
        self.step7_sweep()
        self.step7_rotation()
        self.step7_drain()
        self.plot()
        self.step8_delete()
        return self.figures

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def worker_selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=worker"

    def worker_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.items("pods", self.worker_selector)
            if not p["metadata"].get("deletionTimestamp")
        ]

    def ready_workers(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.worker_pods() if is_ready(p))

    @contextmanager
    def watch_ready(self, replicas: int) -> Iterator[Follow]:
        """Poll (every 50 ms, in-process) for ``replicas`` Ready worker pods and for READY True
        of the PgQueueWorker, recording when each was first seen."""
        follow = Follow()
        stop = threading.Event()
        api = self.kube.api_client()
        raw = Kube(api)
        ns = self.namespace
        pods_path = f"/api/v1/namespaces/{ns}/pods"
        pqw_path = f"/apis/pgqueue.dev/v1alpha1/namespaces/{ns}/pgqueueworkers/{self.name}"

        def loop() -> None:
            try:
                while not stop.is_set() and follow.pqw_at is None:
                    now = time.monotonic()
                    pods = raw.request(
                        "GET", pods_path, query=[("labelSelector", self.worker_selector)]
                    )["items"]
                    if follow.pods_at is None and sum(map(is_ready, pods)) >= replicas:
                        follow.pods_at = now
                    try:
                        status = raw.request("GET", pqw_path).get("status") or {}
                    except Exception:  # not created yet
                        status = {}
                    ready = [
                        c
                        for c in status.get("conditions") or []
                        if c["type"] == "Ready" and c["status"] == "True"
                    ]
                    if follow.pods_at is not None and ready:
                        follow.pqw_at = time.monotonic()
                    stop.wait(0.05)  # the poll interval
            except BaseException as exc:  # reported by the step
                follow.errors.append(exc)

        thread = threading.Thread(target=loop, name="ready-follow", daemon=True)
        thread.start()
        try:
            yield follow
        finally:
            stop.set()
            thread.join(timeout=30)
            api.close()
        check(not follow.errors, f"the Ready watch failed: {follow.errors!r}")

    def record_follow(self, when: str, follow: Follow) -> None:
        seconds = follow.seconds
        check(seconds is not None, f"the PgQueueWorker never turned Ready ({when})")
        assert seconds is not None
        self.figures.setdefault("ready_follow_s", {})[when] = round(seconds, 3)
        self.note(
            f"kubectl get pqw READY True {seconds:.2f}s after the last pod turned Ready "
            f"({when}; bound {FOLLOW_BOUND:.0f} s)"
        )
        check(seconds <= FOLLOW_BOUND, f"READY followed the pods after {seconds:.2f}s ({when})")

    # -- 2, on the node -------------------------------------------------------------------------

    def step2_node(self) -> None:
        with self.step("2b. the pods on the node: get -o wide, logs, exec, securityContext"):
            table = self.kubectl("get", "pods", "-o", "wide").stdout
            self.out(table)
            lines = table.splitlines()
            check(
                lines[0].split()[:7]
                == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
                f"unexpected columns: {lines[0]}",
            )
            rows = {line.split()[0]: line.split() for line in lines[1:]}
            operator = [n for n in rows if n.startswith(f"{RELEASE}-pgqueue-operator-")]
            workers = [n for n in rows if n.startswith(f"{self.name}-worker-")]
            check(len(operator) == 1, f"operator pods: {operator}")
            check(len(workers) == WORKER_REPLICAS, f"worker pods: {workers}")
            for name in operator + workers:
                check(rows[name][1:4] == ["1/1", "Running", "0"], f"{name}: {rows[name]}")
                check(rows[name][6] == self.node_name, f"{name} is not on the node: {rows[name]}")
            self.operator_pod = operator[0]
            pod = self.get("pod", operator[0]) or {}
            probe = pod["spec"]["containers"][0].get("readinessProbe") or {}
            check(probe.get("httpGet", {}).get("path") == "/healthz", "no operator readiness")
            logs = self.kubectl("logs", operator[0]).stdout
            check("Traceback" not in logs, f"the operator logged a traceback:\n{logs[-3000:]}")
            victim = workers[0]
            logs = self.kubectl("logs", victim, "-c", "worker").stdout
            check(f"worker {victim}: queues=default" in logs, f"worker log:\n{logs[-2000:]}")
            spec = (self.get("pod", victim) or {})["spec"]
            context = spec["containers"][0]["securityContext"]
            check(context == restricted_security_context(), f"securityContext {context}")

            def exec_(*cmd: str) -> Any:
                return self.kubectl("exec", victim, "-c", "worker", "--", *cmd, check=False)

            uid = exec_("id", "-u")
            check(uid.stdout.strip() == "10001", f"id -u: {uid.stdout}{uid.stderr}")
            root = exec_("touch", "/opt/venv/written")
            check(
                root.returncode != 0 and "Read-only file system" in root.stderr,
                f"the root filesystem is writable: {root.stderr}",
            )
            tmp = exec_("touch", "/tmp/written")  # noqa: S108 - inside the pod
            check(tmp.returncode == 0, f"/tmp (the emptyDir) is not writable: {tmp.stderr}")  # noqa: S108
            caps = exec_("grep", "^CapEff", "/proc/1/status").stdout.split()
            check(caps == ["CapEff:", "0000000000000000"], f"capabilities: {caps}")
            self.note(
                f"operator and {len(workers)} workers Running on {self.node_name}, 0 "
                "restarts; logs and exec work; uid 10001, read-only root, no capabilities"
            )

    # -- 5, service discovery -------------------------------------------------------------------

    def discovered_targets(self) -> int:
        return WORKER_REPLICAS if self.workers else 0

    def scrape_jobs(self) -> list[dict[str, Any]]:
        """The workers through service discovery instead of their port-forwards (both would
        count every worker series twice in the dashboard's sums)."""
        jobs = super().scrape_jobs()
        if self.workers:
            workers = f"/{self.name}-metrics/"
            jobs = [j for j in jobs if workers not in j["job_name"]]
            jobs.append(self.discovery_job())
        return jobs

    def new_prometheus(self) -> Prometheus:
        exe, promtool = with_kubernetes_sd()
        return Prometheus(self.workdir / "prometheus", exe=exe, promtool=promtool)

    def discovery_job(self) -> dict[str, Any]:
        """What a ServiceMonitor on the workers' metrics Service makes Prometheus do: watch the
        Service's endpoints through the API server and scrape each Ready pod's IP."""
        assert self.kube.pki_dir is not None
        pki = load_pki(self.kube.pki_dir)
        return {
            "job_name": SD_JOB,
            "kubernetes_sd_configs": [
                {
                    "role": "endpoints",
                    "api_server": self.kube.server,
                    "namespaces": {"names": [self.namespace]},
                    "tls_config": {
                        "ca_file": str(pki.ca_cert),
                        "cert_file": str(pki.admin_cert),
                        "key_file": str(pki.admin_key),
                    },
                }
            ],
            "relabel_configs": [
                {
                    "source_labels": ["__meta_kubernetes_service_name"],
                    "regex": f"{self.name}-metrics",
                    "action": "keep",
                },
                {
                    "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                    "regex": "metrics",
                    "action": "keep",
                },
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            ],
        }

    def discovered(self) -> dict[str, str]:
        """Pod name → health of the targets Prometheus discovered."""
        assert self.prometheus is not None
        return {
            t["labels"].get("pod", ""): t["health"]
            for t in self.prometheus.targets()
            if t["scrapePool"] == SD_JOB
        }

    def step5_discovery(self) -> None:
        with self.step("5b. Prometheus discovers the worker pods through the API server"):
            wanted = self.ready_workers()

            def found() -> dict[str, str] | None:
                targets = self.discovered()
                ok = sorted(targets) == wanted and set(targets.values()) == {"up"}
                return targets if ok else None

            targets = eventually(f"targets {wanted} discovered and up", found, 90, 0.25)
            assert self.prometheus is not None
            ups = self.prometheus.query(f'up{{job="{SD_JOB}"}}')
            addresses = sorted(str(s["metric"]["instance"]) for s in ups)
            ips = sorted(f"{p['status']['podIP']}:{metrics_port(p)}" for p in self.worker_pods())
            check(addresses == ips, f"scraped {addresses}, the pods are at {ips}")
            self.note(
                f"kubernetes_sd (endpoints of {self.name}-metrics): {sorted(targets)} at "
                f"{addresses}, all up"
            )
            self.figures["discovered"] = addresses

    # -- 7b, Secret rotation ----------------------------------------------------------------------

    def app_calls_ok(self, since: int) -> int:
        assert self.app is not None
        calls = self.app.snapshot()[since:]
        wrong = [c for c in calls if not (c.ok and c.value == c.expected)]
        check(not wrong, f"{len(wrong)} of {len(calls)} calls lost or wrong: {wrong[:3]}")
        return len(calls)

    def step7_rotation(self) -> None:
        assert self.app is not None
        app = self.app
        with self.step("7b. rotate the database Secret: the Deployment rolls, no call lost"):
            before = set(self.ready_workers())
            deployment = self.get("deployment", f"{self.name}-worker") or {}
            checksum = deployment["spec"]["template"]["metadata"]["annotations"]
            info = psycopg.conninfo.conninfo_to_dict(self.pod_dsn)
            info["application_name"] = "pgqueue-rotated"
            rotated = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
            since = len(app.snapshot())
            app.start_loop()
            started = time.monotonic()
            secret = self.kubectl(
                "create",
                "secret",
                "generic",
                "pgqueue-db",
                f"--from-literal=dsn={rotated}",
                "--dry-run=client",
                "-o",
                "yaml",
            ).stdout
            self.kubectl("apply", "-f", "-", input=secret)

            def rolled() -> list[str] | None:
                ready = self.ready_workers()
                pods = self.worker_pods()
                fresh = len(ready) == WORKER_REPLICAS and not (set(ready) & before)
                return ready if fresh and len(pods) == WORKER_REPLICAS else None

            after = eventually("every worker pod replaced and Ready", rolled, ROLL_DEADLINE, 0.25)
            seconds = time.monotonic() - started
            count = len(app.snapshot())
            eventually("20 more calls", lambda: len(app.snapshot()) >= count + 20, 60)
            app.stop_loop()
            calls = self.app_calls_ok(since)
            new = (self.get("deployment", f"{self.name}-worker") or {})["spec"]["template"]
            check(new["metadata"]["annotations"] != checksum, "the pod-template checksum kept")
            env = self.kubectl("exec", after[0], "-c", "worker", "--", "printenv", "PGQUEUE_DSN")
            check("application_name=pgqueue-rotated" in env.stdout, "the new pod's DSN is old")

            def rediscovered() -> bool:
                targets = self.discovered()
                return sorted(targets) == after and set(targets.values()) == {"up"}

            eventually("Prometheus to discover the new pods", rediscovered, 90, 0.25)
            self.figures["rotation"] = {"rolled_s": round(seconds, 3), "calls": calls}
            self.note(
                f"{WORKER_REPLICAS} pods replaced {seconds:.1f}s after the Secret changed; "
                f"{calls} calls meanwhile, none lost; Prometheus follows the new pods"
            )

    # -- 7c, drain -----------------------------------------------------------------------------

    def step7_drain(self) -> None:
        assert self.app is not None
        app = self.app
        with self.step(
            "7c. kubectl drain the node: the PodDisruptionBudget stops the 2nd eviction"
        ):
            pdb = self.get("poddisruptionbudget", f"{self.name}-worker") or {}
            check(pdb["spec"].get("maxUnavailable") == 1, f"PDB {pdb.get('spec')}")
            before = self.ready_workers()
            since = len(app.snapshot())
            app.start_loop()
            self.stack.callback(self.kube.kubectl, "uncordon", self.node_name, check=False)
            drain = self.kube.kubectl(
                "drain",
                self.node_name,
                f"--pod-selector={self.worker_selector}",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=20s",
                check=False,
                timeout=90,
            )
            output = drain.stdout + drain.stderr
            check(drain.returncode != 0, f"drain succeeded past the PDB:\n{output}")
            check(
                "would violate the pod's disruption budget" in output,
                f"drain did not name the PDB:\n{output}",
            )
            left = self.ready_workers()
            check(
                len(left) == WORKER_REPLICAS - 1 and set(left) < set(before),
                f"after the drain: {left} of {before}",
            )
            pending = [
                p["metadata"]["name"]
                for p in self.worker_pods()
                if (p.get("status") or {}).get("phase") == "Pending"
            ]
            # The Eviction API itself, for the pod left: 429 while the budget is spent.
            api = self.kube.api_client()
            try:
                Kube(api).request(
                    "POST",
                    f"/api/v1/namespaces/{self.namespace}/pods/{left[0]}/eviction",
                    body={
                        "apiVersion": "policy/v1",
                        "kind": "Eviction",
                        "metadata": {"name": left[0], "namespace": self.namespace},
                    },
                )
                refused: Any = None
            except ApiException as exc:
                refused = exc
            finally:
                api.close()
            check(
                refused is not None and refused.status == 429,
                f"eviction of the last worker was not refused with 429: {refused}",
            )
            assert refused is not None
            reason = json.loads(refused.body or "{}").get("message", "")

            def unready() -> bool:
                status = (self.get("pgqueueworker", self.name) or {}).get("status") or {}
                ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
                return bool(ready) and ready[0]["status"] == "False"

            eventually("READY False with a pod evicted", unready, FOLLOW_BOUND, 0.1)
            with self.watch_ready(WORKER_REPLICAS) as follow:
                self.kube.kubectl("uncordon", self.node_name)
                eventually(
                    "the PgQueueWorker Ready again",
                    lambda: follow.seconds is not None,
                    ROLL_DEADLINE,
                )
            self.record_follow("uncordon", follow)
            count = len(app.snapshot())
            eventually("20 more calls", lambda: len(app.snapshot()) >= count + 20, 60)
            app.stop_loop()
            calls = self.app_calls_ok(since)
            self.figures["drain"] = {"evicted": 1, "refused": 429, "calls": calls}
            self.note(
                f"drain evicted 1 of {len(before)} (replacement {pending} Pending on the "
                f"cordoned node), then stopped: 429 {reason!r}; uncordoned, back to "
                f"{WORKER_REPLICAS} Ready; {calls} calls, none lost"
            )

    # -- 8 -------------------------------------------------------------------------------------

    def step8_delete(self) -> None:
        rows = self.kubectl("get", "pod", self.operator_pod, "-o", "json").stdout
        restarts = json.loads(rows)["status"]["containerStatuses"][0]["restartCount"]
        check(restarts == 0, f"the operator pod restarted {restarts} times during the story")
        super().step8_delete()
