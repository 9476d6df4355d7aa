"""Smoke test of the k8s tier itself: the API server, controller-manager, kubectl and helm are real.

If these fail, every operator test above them would fail for reasons that are not the operator's:
CEL validation with the rule's message, a watch, the status subresource, garbage collection by
the controller-manager, and Helm talking to the cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from devtools.kubeapi import KubeCluster

FIXTURES = Path(__file__).parent / "fixtures"
GROUP, VERSION, PLURAL = "smoke.pgqueue.test", "v1", "widgets"


def eventually(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll ``check`` until true or fail at the deadline (the API offers no event to await)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)  # poll interval of a deadline loop, not a stand-in for an event


def widget(name: str, replicas: int, max_replicas: int, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "maxReplicas": max_replicas, **extra},
    }


@pytest.fixture(scope="module")
def widget_crd(kube: KubeCluster) -> Iterator[str]:
    crd = FIXTURES / "widget-crd.yaml"
    kube.kubectl("apply", "-f", str(crd))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    yield f"{PLURAL}.{GROUP}"
    kube.kubectl("delete", "-f", str(crd), "--wait=false", check=False)


@pytest.fixture
def api(kube: KubeCluster) -> Iterator[Any]:
    api_client = kube.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


def test_kubectl_lists_namespaces(kube: KubeCluster, kube_namespace: str) -> None:
    out = kube.kubectl("get", "ns", "-o", "json").stdout
    names = {item["metadata"]["name"] for item in json.loads(out)["items"]}
    assert {"default", "kube-system", kube_namespace} <= names


@pytest.mark.usefixtures("widget_crd")
def test_cel_rules_reject_with_their_messages(kube: KubeCluster, kube_namespace: str) -> None:
    too_many = kube.kubectl(
        "apply", "-n", kube_namespace, "-f", "-",
        input=json.dumps(widget("too-many", replicas=5, max_replicas=3)),
        check=False,
    )  # fmt: skip
    assert too_many.returncode != 0
    assert "replicas must not exceed maxReplicas" in too_many.stderr

    bad_mode = kube.kubectl(
        "apply", "-n", kube_namespace, "-f", "-",
        input=json.dumps(widget("bad-mode", replicas=1, max_replicas=3, mode="stream")),
        check=False,
    )  # fmt: skip
    assert bad_mode.returncode != 0
    assert "mode stream is not rpc or batch" in bad_mode.stderr

    got = kube.kubectl("get", "widgets", "-n", kube_namespace, "-o", "json").stdout
    assert json.loads(got)["items"] == []


@pytest.mark.usefixtures("widget_crd")
def test_valid_object_is_watched_and_status_patched(api: Any, kube_namespace: str) -> None:
    objects: Any = client.CustomObjectsApi(api)  # returns plain dicts typed as object
    listed = objects.list_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL)
    since = listed["metadata"]["resourceVersion"]

    objects.create_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, widget("ok", replicas=2, max_replicas=3, mode="rpc")
    )

    seen: list[tuple[str, str]] = []
    watcher: Any = watch.Watch  # untyped in the kubernetes package
    stream: Any = watcher()
    for event in stream.stream(
        objects.list_namespaced_custom_object,
        GROUP,
        VERSION,
        kube_namespace,
        PLURAL,
        resource_version=since,
        timeout_seconds=30,
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if seen[-1] == ("ADDED", "ok"):
            stream.stop()
    assert ("ADDED", "ok") in seen

    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, kube_namespace, PLURAL, "ok", {"status": {"phase": "Ready"}}
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"] == {"replicas": 2, "maxReplicas": 3, "mode": "rpc"}

    # The main resource ignores status: only the subresource writes it.
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, "ok", {"status": {"phase": "Hacked"}}
    )
    got = objects.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL, "ok")
    assert got["status"] == {"phase": "Ready"}


@pytest.mark.usefixtures("widget_crd")
@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_owned_deployment_is_garbage_collected(
    api: Any, kube_namespace: str, propagation: str
) -> None:
    objects: Any = client.CustomObjectsApi(api)  # returns plain dicts typed as object
    apps: Any = client.AppsV1Api(api)
    owner = objects.create_namespaced_custom_object(
        GROUP, VERSION, kube_namespace, PLURAL, widget("owner", replicas=1, max_replicas=1)
    )
    labels = {"app": "owned"}
    apps.create_namespaced_deployment(
        kube_namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Widget",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "registry.invalid/none:0"}]},
                },
            },
        },
    )

    # The deployment controller answering proves the controller-manager is live before GC.
    def replica_set_exists() -> bool:
        return bool(apps.list_namespaced_replica_set(kube_namespace).items)

    eventually("the deployment controller to create a ReplicaSet", replica_set_exists)

    objects.delete_namespaced_custom_object(
        GROUP,
        VERSION,
        kube_namespace,
        PLURAL,
        "owner",
        body=client.V1DeleteOptions(propagation_policy=propagation),
    )

    def collected() -> bool:
        deployments = apps.list_namespaced_deployment(kube_namespace).items
        replica_sets = apps.list_namespaced_replica_set(kube_namespace).items
        owners = objects.list_namespaced_custom_object(GROUP, VERSION, kube_namespace, PLURAL)
        return not deployments and not replica_sets and not owners["items"]

    eventually(f"{propagation} garbage collection of the owned Deployment", collected)


def test_helm_runs_from_the_cache(kube: KubeCluster, api: Any, kube_namespace: str) -> None:
    helm = kube.tool("helm")
    if (kube.bin_dir / "helm").is_file():
        assert Path(helm).parent == kube.bin_dir

    version = kube.helm("version", "--short").stdout
    assert version.startswith("v3.")

    chart = str(FIXTURES / "tiny-chart")
    rendered = kube.helm("template", "smoke", chart, "--set", "greeting=hi").stdout
    assert "name: smoke-greeting" in rendered
    assert 'greeting: "hi"' in rendered

    kube.helm("install", "smoke", chart, "-n", kube_namespace, "--wait", "--timeout", "60s")
    core: Any = client.CoreV1Api(api)
    data = core.read_namespaced_config_map("smoke-greeting", kube_namespace).data
    server_version = json.loads(kube.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert data["greeting"] == "hello"
    assert data["kubeVersion"] == server_version["gitVersion"]
