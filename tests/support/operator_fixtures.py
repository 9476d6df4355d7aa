"""Fixtures of the operator's k8s tests: the CRD installed once, the operator as a real subprocess.

``pgqueue_crd`` applies ``crds/pgqueueworkers.pgqueue.dev.yaml`` to the session's API server and
waits for it to be Established. ``operator_process`` starts ``pgqueue-operator run --namespace
<ns>`` with the cluster's kubeconfig on free ports and waits until its ``/healthz`` answers; it can
be killed (SIGKILL, mid-reconcile) and started again, and its log is kept for assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from devtools.kubeapi import KubeCluster, free_port

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "pgqueueworkers.pgqueue.dev.yaml"
START_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def pgqueue_crd(kube: KubeCluster) -> Path:
    """The PgQueueWorker CRD, applied and Established."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    # Served, not just Established: right after Established the storage answers 429
    # "(re)initializing" for a moment, which would delay an operator's first watch by its
    # retry backoff. (`kubectl wait` itself can fail on a CRD whose conditions are still unset.)
    deadline = time.monotonic() + 60
    while kube.kubectl("get", "pgqueueworkers", "-A", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the PgQueueWorker CRD is Established but not served")
        time.sleep(0.2)  # poll interval of a deadline loop
    _await_garbage_collection(kube)
    return CRD


def _await_garbage_collection(kube: KubeCluster, timeout: float = 90.0) -> None:
    """Wait until the controller-manager's garbage collector knows the new kind.

    It learns new CRDs on its periodic discovery (every 30 s); until then, children of a deleted
    PgQueueWorker are not collected. A probe object with a dependent ConfigMap shows when it does.
    """
    ns = "pgqueue-crd-probe"
    kube.kubectl("create", "namespace", ns)
    try:
        probe = {
            "apiVersion": "pgqueue.dev/v1alpha1",
            "kind": "PgQueueWorker",
            "metadata": {"name": "probe", "namespace": ns},
            "spec": {
                "image": "probe",
                "queues": ["probe"],
                "tasks": ["probe"],
                "database": {"secretName": "probe"},
                "taskTimeLimitSeconds": 1,
            },
        }
        out = kube.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(probe))
        uid = json.loads(out.stdout)["metadata"]["uid"]
        dependent = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "probe-dependent",
                "namespace": ns,
                "ownerReferences": [
                    {
                        "apiVersion": "pgqueue.dev/v1alpha1",
                        "kind": "PgQueueWorker",
                        "name": "probe",
                        "uid": uid,
                    }
                ],
            },
        }
        kube.kubectl("create", "-f", "-", input=json.dumps(dependent))
        kube.kubectl("-n", ns, "delete", "pgqueueworker", "probe", "--wait=false")
        deadline = time.monotonic() + timeout
        while (
            kube.kubectl("-n", ns, "get", "configmap", "probe-dependent", check=False).returncode
            == 0
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the garbage collector never collected a PgQueueWorker's child")
            time.sleep(0.5)  # poll interval of a deadline loop
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class OperatorProcess:
    """One ``pgqueue-operator run`` subprocess (restartable) and its log file."""

    kube: KubeCluster
    namespace: str
    log_path: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    def command(self) -> list[str]:
        exe = shutil.which("pgqueue-operator")
        base = [exe] if exe else [sys.executable, "-m", "pgqueue_operator.cli"]
        return [
            *base,
            "run",
            "--namespace",
            self.namespace,
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
        ]

    def start(self) -> OperatorProcess:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kube.kubeconfig),
            # Fast loops for tests; production defaults are 10 s / 60 s / 10 s.
            "PGQUEUE_OPERATOR_SAMPLE_INTERVAL": "0.5",
            "PGQUEUE_OPERATOR_RESYNC_INTERVAL": "5",
            "PGQUEUE_OPERATOR_RETRY_DELAY": "1",
            "PGQUEUE_OPERATOR_VERBOSE": os.environ.get("PGQUEUE_TEST_OPERATOR_VERBOSE", "false"),
            **self.env_extra,
        }
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while _http_status(self.health_url) != 200:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the operator exited ({self.popen.returncode}):\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not become healthy:\n{self.logs()}")
            with contextlib.suppress(subprocess.TimeoutExpired):  # poll interval, liveness check
                self.popen.wait(timeout=0.1)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a node failure or an OOM kill would do it."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=15)
        self._close_log()

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=15)
        self._close_log()
        return self.popen.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return str(resp.read().decode())


@pytest.fixture
def operator_process(
    kube: KubeCluster, kube_namespace: str, pgqueue_crd: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator, started and healthy, watching ``kube_namespace``; stopped afterwards."""
    proc = OperatorProcess(kube, kube_namespace, tmp_path / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        if proc.popen is not None and proc.popen.poll() is None:
            # While the operator still runs, so it can remove its finalizer and the namespace
            # deletion that follows is not left hanging.
            kube.kubectl("-n", kube_namespace, "delete", "pgqueueworkers", "--all",
                         "--wait=true", "--timeout=30s", check=False)  # fmt: skip
        proc.stop()
        sys.stderr.write(f"operator log: {proc.log_path}\n")
