"""``spec.pod``: what a PgQueueWorker adds to its worker pods (and, where it applies, the sweep's).

Real task code needs its own settings, credentials and files, so the pods take ``env``,
``envFrom``, ``volumes`` / ``volumeMounts``, a ServiceAccount, spread constraints, init containers
and extra containers (sidecars). Nested Kubernetes objects pass through as given
(:class:`~pgqueue_operator.modeling.OpenModel`: their names are checked here, the rest by the API
server when the Deployment is applied). The variables the operator derives (:data:`OPERATOR_ENV`)
cannot be set in ``env``: a spec that tries is rejected by CEL and by pydantic, naming the field
that sets the variable instead. ``envFrom`` cannot override them either: in Kubernetes an ``env``
entry wins over an ``envFrom`` key of the same name, and the operator's are ``env`` entries.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from pgqueue_operator.modeling import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    OPEN_OBJECT,
    Model,
    OpenModel,
    cel,
    list_map,
    rules,
)

OPERATOR_ENV: dict[str, str] = {
    "PGQUEUE_DSN": "spec.database",
    "PGQUEUE_POOLED": "spec.database.pooled",
    "PGQUEUE_QUEUES": "spec.queues",
    "PGQUEUE_TASKS": "spec.tasks",
    "PGQUEUE_CONCURRENCY": "spec.concurrency",
    "PGQUEUE_POOL": "spec.pool",
    "PGQUEUE_TASK_TIME_LIMIT": "spec.taskTimeLimitSeconds",
    "PGQUEUE_LEASE": "spec.timing.leaseSeconds",
    "PGQUEUE_MAX_ATTEMPTS": "spec.timing.maxAttempts",
    "PGQUEUE_RESULT_TTL": "spec.retention.resultTtlSeconds",
    "PGQUEUE_SHUTDOWN_GRACE": "spec.timing.shutdownGraceSeconds",
    "PGQUEUE_HEARTBEAT_STALENESS": "spec.timing.heartbeatStalenessSeconds",
    "PGQUEUE_POLL_INTERVAL": "spec.timing.pollIntervalSeconds",
    "PGQUEUE_METRICS_PORT": "spec.metrics.port",
    "PGQUEUE_WORKER_ID": "the pod's name",
    "PGQUEUE_BATCH_SIZE": "spec.retention.sweepBatchSize",
    "PGQUEUE_DEAD_LETTER_RETENTION": "spec.retention.deadLetterRetentionSeconds",
}
"""Every variable the operator writes into a pod, and the spec field it comes from."""

TMP_PATH = "/tmp"  # noqa: S108 - the operator's emptyDir, not a file created here
RESERVED_VOLUMES = frozenset({"tmp"})
"""Volumes the operator adds itself (the writable ``/tmp`` of a read-only root filesystem)."""
RESERVED_CONTAINERS = frozenset({"worker", "migrate", "sweep"})
"""Container names the operator uses: the worker, its ``migrate`` init container, the sweep."""

_OWNED_LIST = "[" + ", ".join(f"'{name}'" for name in OPERATOR_ENV) + "]"


def _quoted(names: frozenset[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in sorted(names)) + "]"


# Fields are declared one by one, each with its own range, pattern and description, so many look
# alike; that is intentional: each declaration is what `kubectl explain` shows for that field, and
# a shared helper would hide it from the reader of this file.
class EnvVar(Model):
    """One environment variable, as in a container spec."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                f"!(self.name in {_OWNED_LIST})",
                "pod.env: the PGQUEUE_* variables the operator derives cannot be set here; set "
                "the PgQueueWorker field they come from (see docs/operator.md)",
                ".name",
                "'pod.env: ' + self.name + ' is derived by the operator and cannot be set here; "
                "set the PgQueueWorker field it comes from (see docs/operator.md)'",
            ),
            cel(
                "!(has(self.value) && has(self.valueFrom))",
                "pod.env: give value or valueFrom, not both",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME, description="Variable name.")
    value: str | None = Field(default=None, description="A literal value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="A value from a Secret or ConfigMap key, a field or a resource, as in a Pod.",
        json_schema_extra=OPEN_OBJECT,
    )

    @field_validator("name")
    @classmethod
    def _not_owned(cls, name: str) -> str:
        if name in OPERATOR_ENV:
            raise ValueError(
                f"{name} is set by the operator from {OPERATOR_ENV[name]}; set that field "
                "instead (pod.env cannot override the derived PGQUEUE_* variables)"
            )
        return name

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: give value or valueFrom, not both")
        return self

    def manifest(self) -> dict[str, Any]:
        if self.value_from is not None:
            return {"name": self.name, "valueFrom": dict(self.value_from)}
        return {"name": self.name, "value": self.value or ""}


class SourceRef(Model):
    """A ConfigMap or Secret in the PgQueueWorker's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Its name.")
    optional: bool | None = Field(
        default=None, description="Start the pod even if it does not exist. Default false."
    )


class EnvFromSource(Model):
    """Every key of a ConfigMap or a Secret as environment variables, as in a container spec."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.configMapRef) != has(self.secretRef)",
                "pod.envFrom: each entry names exactly one of configMapRef and secretRef",
            )
        )
    )

    prefix: str | None = Field(
        default=None,
        max_length=256,
        pattern=ENV_NAME,
        description="Prepended to every key (e.g. APP_).",
    )
    config_map_ref: SourceRef | None = Field(default=None, description="A ConfigMap.")
    secret_ref: SourceRef | None = Field(default=None, description="A Secret.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("each envFrom entry names exactly one of configMapRef and secretRef")
        return self

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Volume(OpenModel):
    """A pod volume, as in a Pod spec (secret, configMap, persistentVolumeClaim, csi, ...)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            **rules(
                cel(
                    f"!(self.name in {_quoted(RESERVED_VOLUMES)})",
                    "pod.volumes: the name tmp is the operator's (the pods' writable /tmp)",
                    ".name",
                )
            ),
        }
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Volume name (a DNS label)."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_VOLUMES:
            raise ValueError(f"the volume name {name!r} is the operator's (the pods' /tmp)")
        return name


class VolumeMount(OpenModel):
    """Where a volume appears in the worker container (and the sweep's), as in a container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            **rules(
                cel(
                    "self.mountPath != '/tmp'",
                    "pod.volumeMounts: /tmp is the operator's emptyDir; mount below it or "
                    "elsewhere",
                    ".mountPath",
                )
            ),
        }
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="A volume of pod.volumes."
    )
    mount_path: str = Field(
        min_length=2, max_length=4096, pattern=r"^/", description="Absolute path in the container."
    )
    read_only: bool | None = Field(default=None, description="Mount read-only. Default false.")

    @field_validator("mount_path")
    @classmethod
    def _not_tmp(cls, path: str) -> str:
        if path.rstrip("/") == TMP_PATH:
            raise ValueError(f"{TMP_PATH} is the operator's emptyDir; mount below it or elsewhere")
        return path


class Container(OpenModel):
    """An init or extra container, as in a Pod spec (its name must not be the operator's)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            **rules(
                cel(
                    f"!(self.name in {_quoted(RESERVED_CONTAINERS)})",
                    "container names worker, migrate and sweep are the operator's",
                    ".name",
                )
            ),
        }
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Container name (DNS label)."
    )
    image: str = Field(min_length=1, max_length=512, description="Container image.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_CONTAINERS:
            raise ValueError(f"the container name {name!r} is the operator's")
        return name


_POD_RULES = rules(
    cel(
        "!has(self.volumeMounts) || self.volumeMounts.all(m, "
        "has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
        "pod.volumeMounts: every mount names a volume of pod.volumes",
        ".volumeMounts",
    )
)


class PodOverrides(Model):
    """Pod settings of the worker pods and, where it applies, of the sweep CronJob's pods.

    Both get env, envFrom, volumes and volumeMounts (the sweep and the migrate init container
    connect to the same database, so they need the same certificates and variables), the
    ServiceAccount, init containers and the placement (node selector, tolerations, affinity,
    priority class, pull secrets). Only the workers get topology spread constraints (they spread
    worker pods) and extra containers (a sidecar would keep a sweep Job from ever finishing;
    a native sidecar, an init container with ``restartPolicy: Always``, is the way for both).
    """

    model_config = ConfigDict(json_schema_extra=_POD_RULES)

    resources: dict[str, Any] | None = Field(
        default=None,
        description="Container resources (requests/limits), as in a Pod spec.",
        json_schema_extra=OPEN_OBJECT,
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector labels, as in a Pod spec."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=64,
        description="Tolerations, as in a Pod spec.",
        json_schema_extra={"items": OPEN_OBJECT},
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="Affinity, as in a Pod spec.", json_schema_extra=OPEN_OBJECT
    )
    topology_spread_constraints: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=16,
        description="Topology spread constraints of the worker pods, as in a Pod spec.",
        json_schema_extra={"items": OPEN_OBJECT},
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on the worker pods."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on the worker pods."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="ServiceAccount of the worker and sweep pods. Default: the namespace's.",
    )
    automount_service_account_token: bool = Field(
        default=False,
        description=(
            "Mount the ServiceAccount's API token into the pods (for tasks that call the "
            "Kubernetes API). Default false."
        ),
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass of the worker and sweep pods."
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, max_length=16, description="Names of image pull Secrets."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Environment variables of the worker, migrate and sweep containers, after the "
            "operator's (so $(PGQUEUE_WORKER_ID) expands). The derived PGQUEUE_* variables "
            "cannot be set here."
        ),
        json_schema_extra=list_map("name"),
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "ConfigMaps and Secrets whose keys become environment variables of the worker, "
            "migrate and sweep containers; the operator's variables win over their keys."
        ),
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=64,
        description="Extra volumes of the worker and sweep pods, as in a Pod spec.",
        json_schema_extra=list_map("name"),
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=64,
        description="Mounts of pod.volumes in the worker, migrate and sweep containers.",
        json_schema_extra=list_map("mountPath"),
    )
    init_containers: list[Container] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Init containers of the worker and sweep pods, run before the operator's migrate "
            "(so a native sidecar, restartPolicy: Always, such as a database proxy, is up first)."
        ),
        json_schema_extra=list_map("name"),
    )
    extra_containers: list[Container] = Field(
        default_factory=list,
        max_length=16,
        description="Extra containers (sidecars) of the worker pods only, next to the worker.",
        json_schema_extra=list_map("name"),
    )

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> PodOverrides:
        declared = {v.name for v in self.volumes}
        for index, mount in enumerate(self.volume_mounts):
            if mount.name not in declared:
                raise ValueError(
                    f"volumeMounts[{index}] names volume {mount.name!r}, which pod.volumes "
                    "does not declare"
                )
        names = [e.name for e in self.env]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"env names {', '.join(duplicates)} more than once")
        return self
