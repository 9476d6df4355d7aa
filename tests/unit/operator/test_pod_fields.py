"""``spec.pod``: env, envFrom, volumes, ServiceAccount, spread, init and extra containers.

Builders only, no cluster: what reaches the worker Deployment, its migrate init container and the
sweep CronJob, and which specs are refused (naming the field) before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pgqueue_operator import crdgen
from pgqueue_operator.builders import cronjob, deployment
from pgqueue_operator.builders.common import Owner
from pgqueue_operator.deriving import derive
from pgqueue_operator.errors import InvalidSpecError
from pgqueue_operator.models import PgQueueWorkerSpec
from pgqueue_operator.podmodels import OPERATOR_ENV
from pgqueue_operator.reconciling import parse_spec

REPO = Path(__file__).resolve().parents[3]
OWNER = Owner(name="extract", namespace="jobs", uid="1234-abcd")

POD: dict[str, Any] = {
    "env": [
        {"name": "APP_MODE", "value": "prod"},
        {"name": "APP_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "key"}}},
        {"name": "APP_WORKER", "value": "$(PGQUEUE_WORKER_ID)"},
    ],
    "envFrom": [
        {"configMapRef": {"name": "app-settings"}},
        {"secretRef": {"name": "app-secrets", "optional": True}, "prefix": "SECRET_"},
    ],
    "volumes": [
        {"name": "certs", "secret": {"secretName": "db-ca"}},
        {"name": "settings", "configMap": {"name": "app-files"}},
    ],
    "volumeMounts": [
        {"name": "certs", "mountPath": "/etc/pg-certs", "readOnly": True},
        {"name": "settings", "mountPath": "/etc/app"},
    ],
    "serviceAccountName": "workers",
    "automountServiceAccountToken": True,
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "priorityClassName": "batch-high",
    "nodeSelector": {"disk": "ssd"},
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "extract"}},
        }
    ],
    "initContainers": [
        {"name": "db-proxy", "image": "proxy:2", "restartPolicy": "Always", "args": ["--port=5433"]}
    ],
    "extraContainers": [{"name": "log-shipper", "image": "shipper:1"}],
}


def spec(pod: dict[str, Any] | None = None, **overrides: Any) -> PgQueueWorkerSpec:
    base: dict[str, Any] = {
        "image": "worker:dev",
        "queues": ["extract"],
        "tasks": ["app.tasks"],
        "database": {"secretName": "db"},
        "taskTimeLimitSeconds": 120,
        "pod": POD if pod is None else pod,
    }
    base.update(overrides)
    return parse_spec(base)


def worker_pod(s: PgQueueWorkerSpec) -> dict[str, Any]:
    built = deployment.build(s, derive(s), OWNER, replicas=1, secret_version="u/1")
    pod: dict[str, Any] = built["spec"]["template"]["spec"]
    return pod


def sweep_pod(s: PgQueueWorkerSpec) -> dict[str, Any]:
    pod: dict[str, Any] = cronjob.build(s, derive(s), OWNER)["spec"]["jobTemplate"]["spec"][
        "template"
    ]["spec"]
    return pod


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in items]


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(i for i in items if i["name"] == name)


def test_worker_container_gets_the_users_env_after_the_operators() -> None:
    worker = worker_pod(spec())["containers"][0]
    env = names(worker["env"])
    assert env[-3:] == ["APP_MODE", "APP_KEY", "APP_WORKER"]
    # $(PGQUEUE_WORKER_ID) expands only if the operator's variable comes first.
    assert env.index("PGQUEUE_WORKER_ID") < env.index("APP_WORKER")
    assert by_name(worker["env"], "APP_KEY")["valueFrom"] == {
        "secretKeyRef": {"name": "api", "key": "key"}
    }
    assert worker["envFrom"] == [
        {"configMapRef": {"name": "app-settings"}},
        {"prefix": "SECRET_", "secretRef": {"name": "app-secrets", "optional": True}},
    ]
    assert worker["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "certs", "mountPath": "/etc/pg-certs", "readOnly": True},
        {"name": "settings", "mountPath": "/etc/app"},
    ]


def test_worker_pod_gets_volumes_account_spread_and_containers() -> None:
    pod = worker_pod(spec())
    assert names(pod["volumes"]) == ["tmp", "certs", "settings"]
    assert by_name(pod["volumes"], "certs") == {"name": "certs", "secret": {"secretName": "db-ca"}}
    assert pod["serviceAccountName"] == "workers"
    assert pod["automountServiceAccountToken"] is True
    assert pod["topologySpreadConstraints"] == POD["topologySpreadConstraints"]
    assert names(pod["containers"]) == ["worker", "log-shipper"]
    # The user's init containers run first: a native sidecar (a database proxy) is up before
    # `pgqueue migrate` connects.
    assert names(pod["initContainers"]) == ["db-proxy", "migrate"]
    assert by_name(pod["initContainers"], "db-proxy")["restartPolicy"] == "Always"


def test_migrate_connects_with_the_same_env_and_files_as_the_worker() -> None:
    migrate = by_name(worker_pod(spec())["initContainers"], "migrate")
    assert names(migrate["env"]) == [
        "PGQUEUE_DSN",
        "PGQUEUE_POOLED",
        "APP_MODE",
        "APP_KEY",
        "APP_WORKER",
    ]
    assert migrate["envFrom"] == worker_pod(spec())["containers"][0]["envFrom"]
    assert "/etc/pg-certs" in [m["mountPath"] for m in migrate["volumeMounts"]]


def test_sweep_shares_env_volumes_init_containers_and_placement() -> None:
    s = spec()
    sweep, worker = sweep_pod(s), worker_pod(s)
    container = sweep["containers"][0]
    assert names(container["env"])[-3:] == ["APP_MODE", "APP_KEY", "APP_WORKER"]
    assert container["envFrom"] == worker["containers"][0]["envFrom"]
    assert container["volumeMounts"] == worker["containers"][0]["volumeMounts"]
    assert sweep["volumes"] == worker["volumes"]
    assert names(sweep["initContainers"]) == ["db-proxy"]
    # One placement builder: what the issue-15 drift lacked (affinity, priority class).
    for key in (
        "affinity",
        "priorityClassName",
        "nodeSelector",
        "serviceAccountName",
        "automountServiceAccountToken",
    ):
        assert sweep[key] == worker[key], key
    # Only the workers spread, and only they get sidecars (one would keep a Job from finishing).
    assert "topologySpreadConstraints" not in sweep
    assert names(sweep["containers"]) == ["sweep"]


def test_defaults_add_nothing_and_keep_the_token_unmounted() -> None:
    pod = worker_pod(spec(pod={}))
    assert pod["automountServiceAccountToken"] is False
    assert names(pod["containers"]) == ["worker"]
    assert names(pod["initContainers"]) == ["migrate"]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert "envFrom" not in pod["containers"][0]
    assert "topologySpreadConstraints" not in pod
    sweep = sweep_pod(spec(pod={}))
    assert "initContainers" not in sweep
    assert sweep["automountServiceAccountToken"] is False


@pytest.mark.parametrize("variable", sorted(OPERATOR_ENV))
def test_operator_variables_cannot_be_set_in_env(variable: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        spec(pod={"env": [{"name": "APP_MODE", "value": "x"}, {"name": variable, "value": "1"}]})
    message = str(caught.value)
    assert message.startswith("spec.pod.env.1.name:"), message
    assert variable in message
    assert OPERATOR_ENV[variable] in message  # names the field to set instead


def test_other_pgqueue_settings_may_be_set_in_env() -> None:
    s = spec(pod={"env": [{"name": "PGQUEUE_LOG_LEVEL", "value": "DEBUG"}]})
    assert by_name(worker_pod(s)["containers"][0]["env"], "PGQUEUE_LOG_LEVEL")["value"] == "DEBUG"


def test_operator_env_lists_every_variable_the_builders_write() -> None:
    s = spec(pod={})
    written = {
        e["name"]
        for pod in (worker_pod(s), sweep_pod(s))
        for c in pod["containers"] + pod.get("initContainers", [])
        for e in c["env"]
    }
    assert written == set(OPERATOR_ENV)


@pytest.mark.parametrize(
    ("pod", "where", "says"),
    [
        (
            {"volumeMounts": [{"name": "nope", "mountPath": "/data"}]},
            "spec.pod",
            "pod.volumes does not declare",
        ),
        ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "spec.pod.volumes.0.name", "operator"),
        (
            {
                "volumes": [{"name": "v", "emptyDir": {}}],
                "volumeMounts": [{"name": "v", "mountPath": "/tmp"}],
            },
            "spec.pod.volumeMounts.0.mountPath",
            "/tmp",
        ),
        ({"volumes": [{"name": "Bad_Name", "emptyDir": {}}]}, "spec.pod.volumes.0.name", ""),
        ({"extraContainers": [{"name": "worker", "image": "x"}]}, "spec.pod.extraContainers", ""),
        ({"initContainers": [{"name": "migrate", "image": "x"}]}, "spec.pod.initContainers", ""),
        ({"initContainers": [{"name": "sweep", "image": "x"}]}, "spec.pod.initContainers", ""),
        ({"envFrom": [{"prefix": "X_"}]}, "spec.pod.envFrom.0", "exactly one"),
        (
            {"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
            "spec.pod.envFrom.0",
            "exactly one",
        ),
        ({"env": [{"name": "A", "value": "1", "valueFrom": {}}]}, "spec.pod.env.0", "not both"),
        ({"env": [{"name": "A=B", "value": "1"}]}, "spec.pod.env.0.name", ""),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.pod",
            "more than once",
        ),
    ],
)
def test_bad_pod_fields_are_refused_naming_the_field(
    pod: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        spec(pod=pod)
    message = str(caught.value)
    assert message.startswith(where), message
    assert says in message


def test_the_crd_guards_the_same_rules() -> None:
    root = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    pod = root["properties"]["spec"]["properties"]["pod"]
    props = pod["properties"]
    env_rules = props["env"]["items"]["x-kubernetes-validations"]
    assert any("PGQUEUE_LEASE" in r["rule"] and r["fieldPath"] == ".name" for r in env_rules)
    for field, key in [
        ("env", "name"),
        ("volumes", "name"),
        ("volumeMounts", "mountPath"),
        ("initContainers", "name"),
        ("extraContainers", "name"),
    ]:
        assert props[field]["x-kubernetes-list-type"] == "map", field
        assert props[field]["x-kubernetes-list-map-keys"] == [key], field
    volume = props["volumes"]["items"]
    assert volume["x-kubernetes-preserve-unknown-fields"] is True
    assert volume["required"] == ["name"]
    assert volume["properties"]["name"]["pattern"]
    assert [r["fieldPath"] for r in pod["x-kubernetes-validations"]] == [".volumeMounts"]
    assert PgQueueWorkerSpec.model_fields["pod"].description


def test_the_example_image_worker_validates_and_builds() -> None:
    """examples/myapp-image/pgqueueworker.yaml (docs/your-image.md) is a valid spec."""
    path = REPO / "examples" / "myapp-image" / "pgqueueworker.yaml"
    (body,) = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "PgQueueWorker"]
    s = parse_spec(body["spec"])
    worker = worker_pod(s)["containers"][0]
    assert worker["envFrom"] == [{"configMapRef": {"name": "myapp-settings"}}]
    assert {"name": "settings", "mountPath": "/etc/myapp", "readOnly": True} in worker[
        "volumeMounts"
    ]
