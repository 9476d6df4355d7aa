"""The container images, built from this checkout with podman and run for real.

One session build (`make images`: the debootstrap base, the offline wheelhouse, both images), then
each test inspects or runs the result: non-root, small, no compilers, labelled, the operator's CLI
answers, and the worker image serves a request-reply call against the test Postgres and drains
cleanly when podman stops it.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.support.workers import http_get, wait_until

import pgqueue
from devtools.kubeapi import KubeCluster
from pgqueue.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "pgqueueworkers.pgqueue.dev.yaml"
SAMPLE = REPO / "crds" / "samples" / "minimal.yaml"
WORKER_IMAGE = "localhost/pgqueue-worker:dev"
OPERATOR_IMAGE = "localhost/pgqueue-operator:dev"
WORKER_SIZE_LIMIT = 250 * 1000 * 1000  # bytes, as podman counts them
STOP_GRACE = 20  # seconds podman waits after SIGTERM before SIGKILL

pytestmark = pytest.mark.timeout(1200)


@dataclass(frozen=True)
class Images:
    worker: str
    operator: str
    build_seconds: float


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


@pytest.fixture(scope="session")
def images() -> Images:
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "--no-print-directory", "images"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise AssertionError(f"make images failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    print(f"make images: {elapsed:.1f}s")
    for image in (WORKER_IMAGE, OPERATOR_IMAGE):
        print(f"{image}: {image_size(image) / 1e6:.1f} MB")
    return Images(WORKER_IMAGE, OPERATOR_IMAGE, elapsed)


def test_worker_image_is_small(images: Images) -> None:
    size = image_size(images.worker)
    print(
        f"{images.worker}: {size / 1e6:.1f} MB; {images.operator}: "
        f"{image_size(images.operator) / 1e6:.1f} MB"
    )
    assert size < WORKER_SIZE_LIMIT, f"worker image is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("which", ["worker", "operator"])
def test_image_runs_as_non_root(images: Images, which: str) -> None:
    image = getattr(images, which)
    assert podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == (
        "10001:10001"
    )
    uid = podman("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip()
    assert uid == "10001"


@pytest.mark.parametrize("which", ["worker", "operator"])
def test_image_has_no_compilers_and_oci_labels(images: Images, which: str) -> None:
    image = getattr(images, which)
    found = podman(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "for c in gcc cc c++ g++ clang make; do command -v $c; done; true",
    ).stdout.split()
    assert found == []
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout)
    assert labels["org.opencontainers.image.title"] == f"pgqueue-{which}"
    for key in ("version", "revision", "created", "licenses", "base.name", "description"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    entrypoint = json.loads(
        podman("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image).stdout
    )
    cli = "pgqueue" if which == "worker" else "pgqueue-operator"
    # Exec form under tini: SIGTERM reaches the CLI, which handles it (see the stop test).
    assert entrypoint == ["tini", "--", f"/opt/venv/bin/{cli}"]


def test_worker_image_cli_answers(images: Images) -> None:
    out = podman("run", "--rm", images.worker, "--help").stdout
    assert "worker" in out


def test_operator_image_help(images: Images) -> None:
    proc = podman("run", "--rm", images.operator, "--help")
    assert "run" in proc.stdout
    run_help = podman("run", "--rm", images.operator, "run", "--help").stdout
    for option in ("--namespace", "--all-namespaces", "--metrics-port", "--health-port"):
        assert option in run_help, option


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"pgqueue-test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        podman("rm", "--force", "--ignore", name, check=False)


def test_worker_image_serves_rpc_and_stops_cleanly(
    images: Images, pg_dsn: str, container_name: str
) -> None:
    port = free_port()
    podman(
        "run", "--detach", "--name", container_name, "--network", "host",
        "--env", f"PGQUEUE_DSN={pg_dsn}",
        images.worker,
        "worker", "--queues", "default", "--tasks", "pgqueue.demo_tasks", "--concurrency", "1",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
    )  # fmt: skip

    def ready() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", container_name).stdout.strip()
        if state != "true":
            logs = podman("logs", container_name, check=False)
            raise AssertionError(f"worker container exited:\n{logs.stdout}{logs.stderr}")
        return http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200

    wait_until(ready, 60, "the worker container's /readyz")

    result = pgqueue.Client(pg_dsn).call(
        "demo.echo", args=["from", "the", "host"], kwargs={"n": 1}, timeout=30
    )
    assert result.ok, result
    assert result.value == {"args": ["from", "the", "host"], "kwargs": {"n": 1}}

    started = time.monotonic()
    podman("stop", "--time", str(STOP_GRACE), container_name, timeout=STOP_GRACE + 30)
    elapsed = time.monotonic() - started
    exit_code = int(
        podman("inspect", "--format", "{{.State.ExitCode}}", container_name).stdout.strip()
    )
    logs = podman("logs", container_name)
    output = logs.stdout + logs.stderr
    print(f"worker container: podman stop took {elapsed:.1f}s, exit code {exit_code}")
    assert elapsed < STOP_GRACE, f"podman stop took {elapsed:.1f}s (SIGKILL after {STOP_GRACE}s)"
    assert exit_code in (0, 143), f"exit code {exit_code}:\n{output}"
    assert "received SIGTERM" in output, output
    assert "stopped:" in output, output


def test_operator_image_reconciles_a_sample_against_the_api_server(
    images: Images,
    kube: KubeCluster,
    kube_namespace: str,
    pg_dsn: str,
    container_name: str,
    tmp_path: Path,
) -> None:
    """The operator image, given a kubeconfig, turns crds/samples/minimal.yaml into children."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/" + CRD.stem)
    sample = yaml.safe_load(SAMPLE.read_text())
    name = sample["metadata"]["name"]
    secret = sample["spec"]["database"]["secretName"]
    kube.kubectl(
        "create", "secret", "generic", secret, "-n", kube_namespace, f"--from-literal=dsn={pg_dsn}"
    )
    kube.kubectl("apply", "-n", kube_namespace, "-f", str(SAMPLE))

    # The image runs as uid 10001: hand it a readable copy of the (0600, root-owned) kubeconfig.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(kube.kubeconfig.read_bytes())
    kubeconfig.chmod(0o644)
    health, metrics = free_port(), free_port()
    podman(
        "run", "--detach", "--name", container_name, "--network", "host",
        "--volume", f"{kubeconfig}:/home/pgqueue/.kube/config:ro",
        "--env", "KUBECONFIG=/home/pgqueue/.kube/config",
        images.operator,
        "run", "--namespace", kube_namespace,
        "--health-port", str(health), "--metrics-port", str(metrics), "--log-format", "json",
    )  # fmt: skip

    def logs() -> str:
        out = podman("logs", container_name, check=False)
        return out.stdout + out.stderr

    def healthy() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", container_name).stdout.strip()
        if state != "true":
            raise AssertionError(f"operator container exited:\n{logs()}")
        return http_get(f"http://127.0.0.1:{health}/healthz")[0] == 200

    wait_until(healthy, 60, "the operator container's /healthz")
    waited = kube.kubectl(
        "wait", "-n", kube_namespace, f"pgqueueworkers.pgqueue.dev/{name}",
        "--for=jsonpath={.status.observedGeneration}=1", "--timeout=90s",
        check=False, timeout=120,
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr + logs()
    kube.kubectl("get", "deployment", f"{name}-worker", "-n", kube_namespace)
    kube.kubectl("get", "cronjob", f"{name}-sweep", "-n", kube_namespace)
    status = json.loads(
        kube.kubectl("get", "pqw", name, "-n", kube_namespace, "-o", "json").stdout
    )["status"]
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["status"] == "False", degraded
    assert http_get(f"http://127.0.0.1:{metrics}/metrics")[0] == 200

    started = time.monotonic()
    podman("stop", "--time", str(STOP_GRACE), container_name, timeout=STOP_GRACE + 30)
    elapsed = time.monotonic() - started
    exit_code = int(
        podman("inspect", "--format", "{{.State.ExitCode}}", container_name).stdout.strip()
    )
    assert elapsed < STOP_GRACE, f"podman stop took {elapsed:.1f}s:\n{logs()}"
    assert exit_code in (0, 143), f"exit code {exit_code}:\n{logs()}"
