"""Pods without a kubelet: run a Pod's container as a local process, exactly as the API holds it.

The control plane here has no kubelet, so the controller-manager creates Pods that stay Pending.
:func:`run_pod` plays the kubelet for one of them: the image's entrypoint (read from the Dockerfile
in ``images/``), the container's ``command``/``args`` and ``env`` (``value``, ``secretKeyRef``
and ``configMapKeyRef`` resolved from the real Secret or ConfigMap, ``fieldRef`` from the Pod;
``envFrom`` from the real Secrets and ConfigMaps, an ``env`` entry winning over their keys), and
its ports. Every pod shares the host's network here, so each container port gets a free loopback
port, substituted wherever the spec spells that port (an ``--x=PORT`` argument, an env value
``PORT``); that is the only rewrite. The readiness probe (``httpGet``) decides readiness, as the
kubelet would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypedDict

from devtools import logfiles
from devtools.kubeapi import KubeCluster, free_port

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"


def entrypoint_of(image: str) -> list[str]:
    """The executable an image runs: the last path of its Dockerfile's ENTRYPOINT, from PATH.

    ``localhost/pgqueue-worker:dev`` is built from ``images/worker/Dockerfile`` (ENTRYPOINT
    ``["tini", "--", "/opt/venv/bin/pgqueue"]``), so its container runs ``pgqueue``.
    """
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    folder = repository.removeprefix("pgqueue-")
    dockerfile = IMAGES / folder / "Dockerfile"
    if not dockerfile.is_file():
        raise LookupError(f"no Dockerfile for image {image!r} (looked at {dockerfile})")
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise LookupError(f"{dockerfile} has no exec-form ENTRYPOINT")
    program = Path(json.loads(match.group(1))[-1]).name
    return [program]


def read_secret(kube: KubeCluster, namespace: str, name: str, key: str) -> str:
    out = kube.kubectl("-n", namespace, "get", "secret", name, "-o", "json")
    data: dict[str, str] = json.loads(out.stdout).get("data") or {}
    return base64.b64decode(data[key]).decode()


def read_data(
    kube: KubeCluster, namespace: str, kind: str, name: str, *, optional: bool = False
) -> dict[str, str]:
    """Every key of a Secret (decoded) or a ConfigMap; ``{}`` for a missing optional one."""
    out = kube.kubectl("-n", namespace, "get", kind, name, "-o", "json", check=not optional)
    if out.returncode != 0:
        return {}
    data: dict[str, str] = json.loads(out.stdout).get("data") or {}
    if kind == "secret":
        return {k: base64.b64decode(v).decode() for k, v in data.items()}
    return dict(data)


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _field(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    fields = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "spec.nodeName": "localhost",
        "status.podIP": "127.0.0.1",
    }
    if path not in fields:
        raise LookupError(f"fieldRef {path} is not emulated")
    return str(fields[path])


def container_env(
    kube: KubeCluster, pod: dict[str, Any], container: dict[str, Any]
) -> dict[str, str]:
    """The container's env as the kubelet would set it (secrets and fields resolved)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind = "configmap" if "configMapRef" in source else "secret"
        ref = source.get("configMapRef") or source["secretRef"]
        data = read_data(kube, namespace, kind, ref["name"], optional=bool(ref.get("optional")))
        prefix = source.get("prefix", "")
        # Keys that are no valid variable name are skipped, as the kubelet does.
        env.update({prefix + k: v for k, v in data.items() if _ENV_NAME.match(prefix + k)})
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = read_secret(kube, namespace, ref["name"], ref["key"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[entry["name"]] = read_data(kube, namespace, "configmap", ref["name"])[ref["key"]]
        elif "fieldRef" in source:
            env[entry["name"]] = _field(pod, source["fieldRef"]["fieldPath"])
        elif entry.get("valueFrom") is None:
            env[entry["name"]] = ""
        else:
            raise LookupError(f"env {entry['name']}: {sorted(source)} is not emulated")
    return env


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


@dataclass
class PodProcess:
    """One Pod's container, running as a local process group."""

    name: str
    namespace: str
    labels: dict[str, str]
    container: dict[str, Any]
    ports: dict[str, int]
    """Container port name (or number as text) → the loopback port it listens on."""
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def url(self, port: str | int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[str(port)]}{path}"

    def start(self) -> PodProcess:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def probe_url(self, kind: str = "readinessProbe") -> str | None:
        get = (self.container.get(kind) or {}).get("httpGet")
        return None if get is None else self.url(get["port"], get.get("path", "/"))

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until the readiness probe answers 200 (what makes a kubelet mark the pod Ready)."""
        assert self.popen is not None
        url = self.probe_url() or self.probe_url("livenessProbe")
        t0 = time.monotonic()
        deadline = t0 + timeout
        while url is not None and _http_status(url) != 200:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"pod {self.name} exited ({self.popen.returncode}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"pod {self.name} not ready after {timeout}s:\n{self.tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):  # poll period, liveness check
                self.popen.wait(timeout=0.1)
        return time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL the whole process group (the supervisor and its task slots): a node dying."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=15)
        self._close()

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``grace``, then SIGKILL (a pod deletion)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):  # slots left behind
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=15)
        self._close()
        return self.popen.returncode

    def _close(self) -> None:
        logfiles.close(self._log)
        self._log = None

    def tail(self, chars: int = 4000) -> str:
        return logfiles.tail(self.log_path, self._log, chars)


def _substitute(text: str, mapping: dict[int, int]) -> str:
    for container_port, host_port in mapping.items():
        if text == str(container_port):
            return str(host_port)
        if text.endswith(f"={container_port}"):
            return text[: -len(str(container_port))] + str(host_port)
    return text


class _Identity(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]


def _identity(meta: dict[str, Any]) -> _Identity:
    """A pod handle's name, namespace and labels, from the Pod's metadata."""
    return _Identity(
        name=meta["name"], namespace=meta["namespace"], labels=dict(meta.get("labels") or {})
    )


def _free_ports(container: dict[str, Any]) -> tuple[dict[str, int], dict[int, int]]:
    """A free loopback port per container port: by container port number and by port name, and
    container port -> local port."""
    ports: dict[str, int] = {}
    mapping: dict[int, int] = {}
    for port in container.get("ports") or []:
        local = free_port()
        mapping[int(port["containerPort"])] = local
        ports[str(port["containerPort"])] = local
        if "name" in port:
            ports[port["name"]] = local
    return ports, mapping


def plan_pod(
    kube: KubeCluster,
    pod: dict[str, Any],
    log_dir: Path,
    *,
    container_name: str | None = None,
    extra_env: dict[str, str] | None = None,
    resolve: Callable[[list[str]], list[str]] | None = None,
) -> PodProcess:
    """The process a kubelet with host networking would start for ``pod`` (not started yet)."""
    containers = pod["spec"]["containers"]
    container = next((c for c in containers if container_name in (None, c["name"])), containers[0])
    ports, mapping = _free_ports(container)
    command = container.get("command") or entrypoint_of(container["image"])
    argv = [_substitute(a, mapping) for a in [*command, *(container.get("args") or [])]]
    if resolve is not None:
        argv = resolve(argv)
    env = {k: _substitute(v, mapping) for k, v in container_env(kube, pod, container).items()}
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    log_dir.mkdir(parents=True, exist_ok=True)
    meta = pod["metadata"]
    return PodProcess(
        **_identity(meta),
        container=container,
        ports=ports,
        argv=argv,
        env={**base, **env, **(extra_env or {})},
        log_path=log_dir / f"{meta['name']}.log",
    )


def python_entrypoints(argv: list[str]) -> list[str]:
    """Run a console script with this interpreter (works in any virtualenv, on PATH or not)."""
    modules = {"pgqueue": "pgqueue.cli", "pgqueue-operator": "pgqueue_operator.cli"}
    if argv and argv[0] in modules:
        return [sys.executable, "-m", modules[argv[0]], *argv[1:]]
    return argv


# ---------------------------------------------------------------------------------------------
# Real pods (a cluster with a kubelet, e.g. kind): the same handle, over `kubectl port-forward`.


def has_kubelet(kube: KubeCluster) -> bool:
    """True when the cluster has nodes, so Pods really run and must not be started here."""
    out = kube.kubectl("get", "nodes", "-o", "name", check=False)
    return out.returncode == 0 and bool(out.stdout.strip())


@dataclass
class ForwardedPod(PodProcess):
    """A Pod a kubelet runs; the local process is its ``kubectl port-forward``."""

    kube: KubeCluster | None = None
    killer: Callable[[str, str], None] | None = None
    """``killer(namespace, name)`` SIGKILLs the pod's container where the runtime allows it (the
    test node: containerd's kill); without it the pod is force-deleted, which a real kubelet
    turns into a SIGTERM with a 2 s grace, not a SIGKILL."""

    def kill(self) -> None:
        """Kill the pod's container (``killer``), else force-delete the Pod."""
        if self.killer is not None:
            self.killer(self.namespace, self.name)
        else:
            assert self.kube is not None
            self.kube.kubectl(
                "-n", self.namespace, "delete", "pod", self.name,
                "--grace-period=0", "--force", "--wait=false",
            )  # fmt: skip
        super().stop(grace=5)


def forward_pod(
    kube: KubeCluster,
    pod: dict[str, Any],
    log_dir: Path,
    killer: Callable[[str, str], None] | None = None,
) -> ForwardedPod:
    """A handle on a running Pod whose container ports are forwarded to free loopback ports."""
    meta = pod["metadata"]
    container = pod["spec"]["containers"][0]
    ports, mapping = _free_ports(container)
    pairs = [f"{local}:{container_port}" for container_port, local in mapping.items()]
    log_dir.mkdir(parents=True, exist_ok=True)
    return ForwardedPod(
        **_identity(meta),
        container=container,
        ports=ports,
        argv=[
            kube.tool("kubectl"),
            "--kubeconfig",
            str(kube.kubeconfig),
            "-n",
            meta["namespace"],
            "port-forward",
            f"pod/{meta['name']}",
            *pairs,
        ],
        env=dict(os.environ),
        log_path=log_dir / f"{meta['name']}.port-forward.log",
        kube=kube,
        killer=killer,
    )
