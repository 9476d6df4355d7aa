"""A real Prometheus server (Debian's ``prometheus``) on loopback, and ``promtool check metrics``.

:func:`scrape_jobs` derives the scrape configuration from what the chart and the operator render:
one job per metrics Service, its targets the pods its selector matches, on the port its
``targetPort`` names — what Kubernetes service discovery would find, mapped onto the loopback
ports of the pod processes (there is no kubelet). A ``prometheus.io/path`` annotation on the
Service is honoured. Queries go through the HTTP API (``/api/v1/query``, ``/api/v1/query_range``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from devtools import logfiles
from devtools.e2e_pods import PodProcess
from devtools.kubeapi import free_port


def scrape_jobs(
    services: Sequence[dict[str, Any]], pods: Sequence[PodProcess]
) -> list[dict[str, Any]]:
    """One ``static_configs`` job per Service port, as endpoints discovery would resolve it."""
    jobs: list[dict[str, Any]] = []
    for service in services:
        meta = service["metadata"]
        selector: dict[str, str] = service["spec"].get("selector") or {}
        annotations: dict[str, str] = meta.get("annotations") or {}
        for port in service["spec"]["ports"]:
            target_port = str(port.get("targetPort", port["port"]))
            targets = []
            for pod in pods:
                if pod.namespace != meta["namespace"]:
                    continue
                if not selector or any(pod.labels.get(k) != v for k, v in selector.items()):
                    continue
                if target_port in pod.ports:
                    targets.append(
                        {
                            "targets": [f"127.0.0.1:{pod.ports[target_port]}"],
                            "labels": {
                                "namespace": meta["namespace"],
                                "service": meta["name"],
                                "pod": pod.name,
                            },
                        }
                    )
            port_name = port.get("name", port["port"])
            jobs.append(
                {
                    "job_name": f"{meta['namespace']}/{meta['name']}/{port_name}",
                    "metrics_path": annotations.get("prometheus.io/path", "/metrics"),
                    "static_configs": targets,
                }
            )
    return jobs


@dataclass
class Prometheus:
    """``prometheus`` with a generated config; ``start()``, query, ``stop()``."""

    workdir: Path
    scrape_interval: str = "1s"
    exe: str = "prometheus"
    promtool: str = "promtool"
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def write_config(self, jobs: list[dict[str, Any]]) -> None:
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": jobs,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run(
            [self.promtool, "check", "config", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"promtool check config failed:\n{check.stdout}{check.stderr}")

    def start(self, jobs: list[dict[str, Any]], timeout: float = 60.0) -> Prometheus:
        exe = shutil.which(self.exe)
        if exe is None:
            raise RuntimeError(f"{self.exe} is not installed (apt-get install -y prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config(jobs)
        self._log = (self.workdir / "prometheus.log").open("ab")
        self.popen = subprocess.Popen(
            [
                exe,
                f"--config.file={self.config_path}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--web.enable-lifecycle",  # POST /-/reload after the config changes
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._ok("/-/ready"):
            if self.popen.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.popen.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=0.1)
        return self

    def reload(self, jobs: list[dict[str, Any]]) -> None:
        self.write_config(jobs)
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    def _ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        data = self._api("/api/v1/query", {"query": expr})
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self._api(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"},
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        data = self._api("/api/v1/targets", {"state": "active"})
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        logfiles.close(self._log)
        self._log = None

    def tail(self, chars: int = 3000) -> str:
        return logfiles.tail(self.workdir / "prometheus.log", self._log, chars)


def with_kubernetes_sd() -> tuple[str, str]:
    """``prometheus`` and ``promtool`` with ``kubernetes_sd_configs``, which Debian's leave out:
    ``hack/prometheus-k8s-sd.sh`` builds them once (cached; milliseconds when built)."""
    script = Path(__file__).resolve().parents[1] / "hack" / "prometheus-k8s-sd.sh"
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=1800, check=False
    )
    folder = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else Path()
    if proc.returncode != 0 or not (folder / "prometheus").is_file():
        raise RuntimeError(
            f"hack/prometheus-k8s-sd.sh failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return str(folder / "prometheus"), str(folder / "promtool")


def scalar(result: list[dict[str, Any]]) -> float | None:
    """The single value of an instant vector (None when it is empty)."""
    if not result:
        return None
    return float(result[0]["value"][1])


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` over an exposition; exit 0 means it passed (lint included)."""
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
