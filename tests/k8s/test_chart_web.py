"""The chart's optional web console (templates/web.yaml): off by default; when on, a Deployment,
a Service and (optionally) an Ingress that the API server accepts, with the DSN and the write
token only as Secret references."""

from __future__ import annotations

import pytest
from tests.k8s.test_chart import CHART, by_kind, fullname, manifests, release_name, render

from devtools.kubeapi import KubeCluster

ON = [
    "--set", "web.enabled=true",
    "--set", "web.dsnSecret.name=pgqueue-db",
    "--set", "web.writeTokenSecret.name=pgqueue-web-token",
    "--set", "web.rootPath=/pgqueue",
    "--set", "web.ingress.enabled=true",
    "--set", "web.ingress.host=ops.example.com",
]  # fmt: skip


def _web(docs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [d for d in docs if str(d["metadata"]["name"]).endswith("-web")]  # type: ignore[index]


def test_the_console_is_off_by_default(kube: KubeCluster, kube_namespace: str) -> None:
    assert _web(render(kube, release_name(), kube_namespace)) == []


def test_the_console_renders_and_the_api_server_accepts_it(
    kube: KubeCluster, kube_namespace: str
) -> None:
    release = release_name()
    docs = render(kube, release, kube_namespace, *ON)
    web = _web(docs)
    assert sorted(d["kind"] for d in web) == ["Deployment", "Ingress", "Service"]
    (deployment,) = by_kind(web, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "web"
    env = {e["name"]: e for e in container["env"]}
    assert env["PGQUEUE_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "pgqueue-db", "key": "dsn"}
    assert env["PGQUEUE_WEB_WRITE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == (
        "pgqueue-web-token"
    )
    assert env["PGQUEUE_WEB_ROOT_PATH"]["value"] == "/pgqueue"
    assert container["readinessProbe"]["httpGet"]["path"] == "/pgqueue/healthz"
    assert pod["automountServiceAccountToken"] is False
    # The operator's Service and Deployment do not select the console's pods, nor it theirs.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "web"
    operator = next(
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == fullname(release)
    )
    assert operator["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    (ingress,) = by_kind(web, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "ops.example.com"
    assert rule["http"]["paths"][0]["path"] == "/pgqueue"
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests(docs), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_console_without_a_dsn_secret_fails_naming_the_value(kube: KubeCluster) -> None:
    proc = kube.helm("template", "x", str(CHART), "--set", "web.enabled=true", check=False)
    assert proc.returncode != 0
    assert "web.dsnSecret.name" in proc.stderr


@pytest.mark.parametrize("bad", ["web.rootPath=pgqueue", "web.port=0", "web.unknown=1"])
def test_schema_rejects_bad_web_values(kube: KubeCluster, bad: str) -> None:
    proc = kube.helm("template", "x", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
