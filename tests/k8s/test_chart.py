"""The Helm chart against real Helm and a real API server.

`helm lint --strict`; the rendered manifests for the default (cluster-wide), namespaced and
ServiceMonitor values accepted by the API server (`kubectl apply --dry-run=server`); and a real
`helm install` / `helm uninstall` whose RBAC is checked with `kubectl auth can-i` as the operator's
ServiceAccount. The CRD in the chart must be the repository's one source, not a copy.
"""

from __future__ import annotations

import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.kubeapi import KubeCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pgqueue-operator"
CRD_SOURCE = REPO / "crds" / "pgqueueworkers.pgqueue.dev.yaml"
CRD_NAME = "pgqueueworkers.pgqueue.dev"
FIXTURES = Path(__file__).parent / "fixtures"
SERVICEMONITOR_CRD = "servicemonitors.monitoring.coreos.com"

NAMESPACED_VERBS = {
    ("patch", "pgqueueworkers.pgqueue.dev"),
    ("update", "pgqueueworkers.pgqueue.dev/status"),
    ("create", "deployments.apps"),
    ("delete", "cronjobs.batch"),
    ("create", "poddisruptionbudgets.policy"),
    ("create", "servicemonitors.monitoring.coreos.com"),
    ("watch", "configmaps"),
    ("list", "pods"),
    ("patch", "pods"),
    ("get", "secrets"),
    ("create", "events"),
    ("patch", "events.events.k8s.io"),
}


def release_name() -> str:
    return f"pq{uuid.uuid4().hex[:8]}"


def fullname(release: str) -> str:
    return f"{release}-pgqueue-operator"


def render(kube: KubeCluster, release: str, namespace: str, *args: str) -> list[dict[str, Any]]:
    out = kube.helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def manifests(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def can_i(kube: KubeCluster, sa: str, verb: str, resource: str, namespace: str) -> bool:
    proc = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", sa, check=False)
    return proc.stdout.strip() == "yes"


def can_i_anywhere(kube: KubeCluster, sa: str, verb: str, resource: str) -> bool:
    """``kubectl auth can-i <verb> <resource> -A``: allowed in every namespace at once."""
    proc = kube.kubectl("auth", "can-i", verb, resource, "-A", "--as", sa, check=False)
    return proc.stdout.strip() == "yes"


def secret_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**rule, "in": f"{doc['kind']} {doc['metadata'].get('namespace', '')}".strip()}
        for doc in docs
        if doc["kind"] in {"ClusterRole", "Role"}
        for rule in doc["rules"]
        if "secrets" in rule["resources"]
    ]


@pytest.fixture
def namespaces(kube: KubeCluster) -> Iterator[list[str]]:
    """Two fresh namespaces for watchNamespaces, deleted afterwards."""
    names = [f"w-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        kube.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            kube.kubectl(
                "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
            )


@pytest.fixture(scope="module")
def servicemonitor_crd(kube: KubeCluster) -> Iterator[None]:
    existed = kube.kubectl("get", "crd", SERVICEMONITOR_CRD, check=False).returncode == 0
    if not existed:
        kube.kubectl("apply", "-f", str(FIXTURES / "servicemonitor-crd.yaml"))
    kube.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", f"crd/{SERVICEMONITOR_CRD}"
    )
    yield
    if not existed:
        kube.kubectl("delete", "crd", SERVICEMONITOR_CRD, "--wait=false", check=False)


def test_chart_crd_is_the_repository_crd(kube: KubeCluster, kube_namespace: str) -> None:
    assert CRD_SOURCE.is_file(), f"{CRD_SOURCE} (the one CRD source) is missing"
    link = CHART / "crds" / CRD_SOURCE.name
    assert link.is_symlink(), "the chart must link the CRD, not hold a copy"
    assert link.resolve() == CRD_SOURCE.resolve()
    docs = render(kube, release_name(), kube_namespace, "--include-crds")
    crds = by_kind(docs, "CustomResourceDefinition")
    assert crds == [yaml.safe_load(CRD_SOURCE.read_text())]


def test_packaged_chart_holds_the_crd_itself(kube: KubeCluster, tmp_path: Path) -> None:
    """`helm package` resolves the link: the archive carries the CRD file, not a dangling link."""
    kube.helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("pgqueue-operator-*.tgz")
    with tarfile.open(archive) as tar:
        member = tar.getmember(f"pgqueue-operator/crds/{CRD_SOURCE.name}")
        assert member.isfile()
        packed = tar.extractfile(member)
        assert packed is not None
        assert packed.read() == CRD_SOURCE.read_bytes()


VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "namespaced": ["--set", "watchNamespaces={a,b}"],
    "servicemonitor": [
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prometheus",
    ],
    "named-secrets": ["--set", "rbac.secrets.names={pgqueue-db,other-db}"],
}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint_strict(kube: KubeCluster, values: str) -> None:
    proc = kube.helm("lint", "--strict", str(CHART), *VALUE_SETS[values], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "bad",
    [
        "unknownKey=1",
        "logFormat=xml",
        "metrics.port=0",
        "watchNamespaces={Not_A_Namespace}",
        "image.pullPolicy=Sometimes",
    ],
)
def test_schema_rejects_bad_values(kube: KubeCluster, bad: str) -> None:
    proc = kube.helm("template", "x", str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_default_values_watch_all_namespaces(kube: KubeCluster, kube_namespace: str) -> None:
    release = release_name()
    docs = render(kube, release, kube_namespace)
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--metrics-port=9090",
        "--health-port=8080",
        "--log-format=json",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert by_kind(docs, "Role") == []
    (cluster_role,) = by_kind(docs, "ClusterRole")
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert {"namespaces", "customresourcedefinitions", "pgqueueworkers"} <= resources
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 9090
    assert by_kind(docs, "ServiceMonitor") == []


def test_watch_namespaces_narrow_flags_and_rbac(kube: KubeCluster, kube_namespace: str) -> None:
    docs = render(kube, release_name(), kube_namespace, "--set", "watchNamespaces={a,b}")
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=a" in args
    assert "--namespace=b" in args
    assert "--all-namespaces" not in args
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == ["a", "b"]
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "RoleBinding")) == ["a", "b"]
    (cluster_role,) = by_kind(docs, "ClusterRole")
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert resources == {"customresourcedefinitions"}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_manifests_accepted_by_api_server(
    kube: KubeCluster,
    kube_namespace: str,
    namespaces: list[str],
    request: pytest.FixtureRequest,
    values: str,
) -> None:
    args = list(VALUE_SETS[values])
    if values == "namespaced":
        args = ["--set", "watchNamespaces={" + ",".join(namespaces) + "}"]
    if values == "servicemonitor":
        request.getfixturevalue("servicemonitor_crd")
    docs = render(kube, release_name(), kube_namespace, "--include-crds", *args)
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests(docs), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = {d["kind"] for d in docs}
    if values == "servicemonitor":
        assert "ServiceMonitor" in kinds
        assert "servicemonitor.monitoring.coreos.com/" in proc.stdout
    if values == "namespaced":
        applied = proc.stdout.splitlines()
        assert sum(line.startswith("role.rbac.authorization.k8s.io/") for line in applied) == 2
        assert sum(line.startswith("rolebinding.rbac.") for line in applied) == 2


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_install_and_uninstall(
    kube: KubeCluster, kube_namespace: str, namespaces: list[str], mode: str
) -> None:
    release = release_name()
    name = fullname(release)
    watched, unwatched = namespaces
    args = ["--set", f"watchNamespaces={{{watched}}}"] if mode == "namespaced" else []
    kube.helm("install", release, str(CHART), "--namespace", kube_namespace, *args)
    try:
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
        status = json.loads(
            kube.helm("status", release, "--namespace", kube_namespace, "-o", "json").stdout
        )
        assert status["info"]["status"] == "deployed"

        deployment = json.loads(
            kube.kubectl("get", "deployment", name, "-n", kube_namespace, "-o", "json").stdout
        )
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        kube.kubectl("get", "serviceaccount", name, "-n", kube_namespace)
        kube.kubectl("get", "service", f"{name}-metrics", "-n", kube_namespace)
        kube.kubectl("get", "clusterrole", name)
        kube.kubectl("get", "clusterrolebinding", name)

        sa = f"system:serviceaccount:{kube_namespace}:{name}"
        assert can_i(kube, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io", "default")
        for verb, resource in sorted(NAMESPACED_VERBS):
            assert can_i(kube, sa, verb, resource, watched), (verb, resource, watched)
            expected = mode == "cluster"
            assert can_i(kube, sa, verb, resource, unwatched) is expected, (verb, resource)
        assert can_i(kube, sa, "list", "namespaces", "default") is (mode == "cluster")
        # Least privilege: Secrets are read by name only, never listed or watched anywhere.
        for verb in ("list", "watch"):
            assert not can_i_anywhere(kube, sa, verb, "secrets"), verb
            assert not can_i(kube, sa, verb, "secrets", watched), verb
        assert not can_i(kube, sa, "update", "secrets", watched)
        # Pods: listed by label and their deletion cost patched, nothing more (scale-in order).
        for verb in ("get", "watch", "create", "update", "delete", "deletecollection"):
            assert not can_i(kube, sa, verb, "pods", watched), verb
        for verb in ("create", "get"):
            assert not can_i(kube, sa, verb, "pods/exec", watched), verb
        assert not can_i(kube, sa, "create", "pods/eviction", watched)
        if mode == "namespaced":
            kube.kubectl("get", "role", name, "-n", watched)
            kube.kubectl("get", "rolebinding", name, "-n", watched)
    finally:
        kube.helm("uninstall", release, "--namespace", kube_namespace, "--wait")

    for kind in ("deployment", "serviceaccount", "service"):
        left = kube.kubectl("get", kind, "-n", kube_namespace, "-o", "name").stdout
        assert name not in left, f"{kind} {name} left after uninstall"
    for kind in ("clusterrole", "clusterrolebinding"):
        left = kube.kubectl("get", kind, name, "--ignore-not-found", "-o", "name").stdout
        assert left == "", f"{kind} {name} left after uninstall"
    left = kube.kubectl("get", "role,rolebinding", "-n", watched, "-o", "name").stdout
    assert name not in left
    # Helm never deletes crds/ (that would delete every PgQueueWorker): the CRD stays.
    kube.kubectl("get", "crd", CRD_NAME)


@pytest.mark.parametrize("values", ["default", "namespaced", "named-secrets"])
def test_no_mode_renders_a_list_or_watch_of_secrets(
    kube: KubeCluster, kube_namespace: str, values: str
) -> None:
    rules = secret_rules(render(kube, release_name(), kube_namespace, *VALUE_SETS[values]))
    assert rules, "the operator must still be able to get its database Secrets"
    for rule in rules:
        assert rule["verbs"] == ["get"], rule
    where = sorted(r["in"] for r in rules)
    assert where == (["Role a", "Role b"] if values == "namespaced" else ["ClusterRole"])
    expected = ["pgqueue-db", "other-db"] if values == "named-secrets" else None
    assert [r.get("resourceNames") for r in rules] == [expected] * len(rules)


def test_secret_reads_narrowed_to_named_secrets_in_named_namespaces(
    kube: KubeCluster, kube_namespace: str, namespaces: list[str]
) -> None:
    """``rbac.secrets``: get only the listed Secrets, only in the listed namespaces."""
    release = release_name()
    name = fullname(release)
    allowed, other = namespaces
    kube.helm(
        "install", release, str(CHART), "--namespace", kube_namespace,
        "--set", f"rbac.secrets.namespaces={{{allowed}}}",
        "--set", "rbac.secrets.names={pgqueue-db}",
    )  # fmt: skip
    try:
        sa = f"system:serviceaccount:{kube_namespace}:{name}"
        assert can_i(kube, sa, "get", "secrets/pgqueue-db", allowed)
        assert not can_i(kube, sa, "get", "secrets/another-secret", allowed)
        assert not can_i(kube, sa, "get", "secrets/pgqueue-db", other)
        assert not can_i(kube, sa, "get", "secrets/pgqueue-db", kube_namespace)
        for verb in ("list", "watch"):
            assert not can_i_anywhere(kube, sa, verb, "secrets"), verb
            assert not can_i(kube, sa, verb, "secrets", allowed), verb
        # The rest of the cluster-wide mode is untouched: it still manages every namespace.
        assert can_i(kube, sa, "create", "deployments.apps", other)
        assert can_i(kube, sa, "watch", "configmaps", other)
        kube.kubectl("get", "role", f"{name}-secrets", "-n", allowed)
    finally:
        kube.helm("uninstall", release, "--namespace", kube_namespace, "--wait")
    left = kube.kubectl("get", "role,rolebinding", "-n", allowed, "-o", "name").stdout
    assert name not in left
