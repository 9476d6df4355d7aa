"""Tools for developers, not shipped in the wheel: the local control plane and the story runner.

``python -m devtools.kubeapi`` (``make k8s-up``) runs a private etcd + kube-apiserver +
controller-manager; ``python -m devtools.story`` (``make demo-k8s``) tells the migration day with
the real components (docs/e2e.md). The tests import these modules; they never import the tests,
and neither ``pgqueue`` nor ``pgqueue_operator`` imports them (``.importlinter``).
"""
