"""Your own tasks in the worker image: docs/your-image.md, proven with podman.

``examples/myapp-image`` is built ``FROM`` the worker image, then its ``pgqueueworker.yaml`` is
rendered by the operator's own builders and run the way a kubelet would run the result: the
``migrate`` init container to completion, then the worker container with the rendered args, env
(literal values, Secret and ConfigMap keys, ``envFrom``, the pod name), volumes, user, read-only
root filesystem and ``/tmp`` emptyDir, until its readiness probe answers. A call to a task of the
example package must then come back with what the pod was configured with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.workers import http_get, wait_until

import pgqueue
from pgqueue.embedded import free_port
from pgqueue_operator.builders import deployment
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.deriving import derive
from pgqueue_operator.reconciling import parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "myapp-image"
WORKER_IMAGE = os.environ.get("PGQUEUE_TEST_WORKER_IMAGE", "localhost/pgqueue-worker:dev")
"""The image `make images` builds; another tag of the same build can be named in env."""
EXAMPLE_IMAGE = "localhost/pgqueue-example:test"
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
API_KEY = "k-5f3a9c1e"

pytestmark = pytest.mark.timeout(1200)


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def worker_image() -> str:
    """The worker image of this checkout (``make images`` when it is not built yet)."""
    if podman("image", "exists", WORKER_IMAGE, check=False).returncode != 0:
        proc = subprocess.run(
            ["make", "--no-print-directory", "images", f"WORKER_IMAGE={WORKER_IMAGE}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1100,
            check=False,
        )
        assert proc.returncode == 0, f"make images failed:\n{proc.stdout[-4000:]}{proc.stderr}"
    return WORKER_IMAGE


@pytest.fixture(scope="session")
def example_image(worker_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """docs/your-image.md step by step, in a copy of the example: wheels, then the image."""
    context = tmp_path_factory.mktemp("myapp-image") / "myapp-image"
    shutil.copytree(EXAMPLE, context, ignore=shutil.ignore_patterns("dist", "build", "*.egg-info"))
    started = time.monotonic()
    wheel = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", "dist", "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert wheel.returncode == 0, f"pip wheel failed:\n{wheel.stdout}{wheel.stderr}"
    assert [w.name for w in (context / "dist").glob("*.whl")] == ["myapp-1.0.0-py3-none-any.whl"]
    podman(
        "build", "--layers", "--build-arg", f"WORKER_IMAGE={worker_image}",
        "-t", EXAMPLE_IMAGE, str(context),
        timeout=900,
    )  # fmt: skip
    print(f"{EXAMPLE_IMAGE}: wheel and image built in {time.monotonic() - started:.1f}s")
    return EXAMPLE_IMAGE


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            podman("rm", "--force", "--ignore", name, check=False)


class Kubelet:
    """The few kubelet duties this test needs, over objects given as dicts (no API server)."""

    def __init__(
        self,
        pod_name: str,
        secrets: dict[str, dict[str, str]],
        configmaps: dict[str, dict[str, str]],
        volume_dir: Path,
    ) -> None:
        self.pod_name = pod_name
        self.secrets = secrets
        self.configmaps = configmaps
        self.volume_dir = volume_dir

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """``envFrom`` first, then ``env`` (an env entry wins over an envFrom key)."""
        out: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                data = self.configmaps[source["configMapRef"]["name"]]
            else:
                data = self.secrets[source["secretRef"]["name"]]
            prefix = source.get("prefix", "")
            out.update({prefix + k: v for k, v in data.items() if ENV_NAME.match(prefix + k)})
        for entry in container.get("env") or []:
            if "value" in entry:
                out[entry["name"]] = entry["value"]
                continue
            ref = entry["valueFrom"]
            if "secretKeyRef" in ref:
                out[entry["name"]] = self.secrets[ref["secretKeyRef"]["name"]][
                    ref["secretKeyRef"]["key"]
                ]
            elif "configMapKeyRef" in ref:
                out[entry["name"]] = self.configmaps[ref["configMapKeyRef"]["name"]][
                    ref["configMapKeyRef"]["key"]
                ]
            else:
                assert ref["fieldRef"]["fieldPath"] == "metadata.name", ref
                out[entry["name"]] = self.pod_name
        return out

    def volumes(self, pod: dict[str, Any]) -> dict[str, Path | None]:
        """Each volume as a host folder (``None``: an emptyDir, a tmpfs in the container)."""
        out: dict[str, Path | None] = {}
        for volume in pod.get("volumes") or []:
            if "emptyDir" in volume:
                out[volume["name"]] = None
                continue
            data = self.configmaps[volume["configMap"]["name"]]
            folder = self.volume_dir / volume["name"]
            folder.mkdir(parents=True)
            folder.chmod(0o755)
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                path = folder / item["path"]
                path.write_text(data[item["key"]])
                path.chmod(0o644)
            out[volume["name"]] = folder
        return out

    def run_args(
        self, pod: dict[str, Any], container: dict[str, Any], volumes: dict[str, Path | None]
    ) -> list[str]:
        """``podman run`` options of one container: user, env, mounts, the restricted profile."""
        security = pod["securityContext"]
        sc = container["securityContext"]
        args = ["--network", "host", "--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        args += [f"--cap-drop={c}" for c in sc.get("capabilities", {}).get("drop", [])]
        for name, value in self.env(container).items():
            args += ["--env", f"{name}={value}"]
        for mount in container.get("volumeMounts") or []:
            source = volumes[mount["name"]]
            if source is None:
                args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
            else:
                ro = ":ro" if mount.get("readOnly") else ""
                args += ["--volume", f"{source}:{mount['mountPath']}{ro}"]
        return args


def test_a_task_package_in_an_image_from_the_worker_image_answers_a_call(
    example_image: str, pg_dsn: str, containers: list[str], tmp_path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLE / "pgqueueworker.yaml").read_text()) if d]
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    (pqw,) = [d for d in docs if d["kind"] == "PgQueueWorker"]
    # The example as a user would apply it, with this test's image and a free metrics port
    # (the containers share the host's network here).
    spec = parse_spec({**pqw["spec"], "image": example_image, "metrics": {"port": free_port()}})
    owner = Owner(name=pqw["metadata"]["name"], namespace="apps", uid=str(uuid.uuid4()))
    rendered = deployment.build(spec, derive(spec), owner, replicas=1, secret_version="u/1")
    pod = rendered["spec"]["template"]["spec"]
    pod_name = f"myapp-worker-{uuid.uuid4().hex[:5]}"
    kubelet = Kubelet(
        pod_name,
        secrets={"pgqueue-db": {"dsn": pg_dsn}, "myapp-api": {"api-key": API_KEY}},
        configmaps=configmaps,
        volume_dir=tmp_path / "volumes",
    )
    volumes = kubelet.volumes(pod)

    # Init containers first, each to completion: here the operator's `pgqueue migrate`.
    assert [c["name"] for c in pod["initContainers"]] == ["migrate"]
    for init in pod["initContainers"]:
        name = f"pgqueue-example-{init['name']}-{uuid.uuid4().hex[:8]}"
        containers.append(name)
        options = kubelet.run_args(pod, init, volumes)
        podman("run", "--name", name, *options, init["image"], *init["args"], timeout=300)

    (worker,) = [c for c in pod["containers"] if c["name"] == "worker"]
    assert worker["image"] == example_image
    name = f"pgqueue-example-worker-{uuid.uuid4().hex[:8]}"
    containers.append(name)
    podman(
        "run", "--detach", "--name", name, *kubelet.run_args(pod, worker, volumes),
        worker["image"], *worker["args"],
    )  # fmt: skip

    probe = worker["readinessProbe"]["httpGet"]
    assert probe["port"] == "metrics"
    url = f"http://127.0.0.1:{spec.metrics.port}{probe['path']}"

    def logs() -> str:
        out = podman("logs", name, check=False)
        return out.stdout + out.stderr

    def ready() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            raise AssertionError(f"the example worker exited:\n{logs()}")
        return http_get(url)[0] == 200

    wait_until(ready, 90, "the example worker's readiness probe")

    result = pgqueue.Client(pg_dsn).call("myapp.greet", args=["pgqueue"], queue="myapp", timeout=60)
    assert result.ok, f"{result}\n{logs()}"
    assert result.value == {
        "greeting": "Bonjour, pgqueue!",  # ConfigMap key, through envFrom
        "mode": "production",  # a literal env value
        "api_key_set": True,  # a Secret key, through env valueFrom
        "api_key_length": len(API_KEY),
        "settings_file": 'region = "eu-west-1"',  # a ConfigMap volume
        "version": "1.0.0",  # the package installed into the image
        "worker": pod_name,  # the operator's PGQUEUE_WORKER_ID, from the pod's name
    }
    assert API_KEY not in logs()
    podman("stop", "--time", "20", name, timeout=60)
