"""Root of the test suite: registers the shared fixtures and marks each tier by its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.workers",
    "tests.support.kube",
    "tests.support.celery_redis",
    "tests.support.faultproxy",
]

_TIERS = {
    "unit": "unit",
    "integration": "integration",
    "faults": "faults",
    "k8s": "k8s",
    "e2e": "e2e",
    "images": "images",
    "benchmarks": "bench",
    "web": "web",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        tier = Path(str(item.fspath)).relative_to(root).parts[0]
        marker = _TIERS.get(tier)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))
